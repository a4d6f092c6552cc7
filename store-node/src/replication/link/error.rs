//! Why a peer link could not be set up ([`HandshakeError`]) or why it ended ([`LinkError`]), one
//! variant per step. Link errors are never returned to a caller: the link tasks log them
//! (`peer connection failed`, `peer link down`, `inbound peer link ended`, `refusing peer`) and
//! the dialer redials with backoff.

use tokio::task::JoinError;

use crate::replication::transport::TransportError;

/// Why the exchange of hellos that opens a link failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Dialing the peer failed; the transport error names the address.
    #[error("{source}")]
    Connect {
        /// The transport's failure.
        source: TransportError,
    },
    /// Sending this node's hello failed.
    #[error("failed to send the hello: {source}")]
    SendHello {
        /// The transport's failure.
        source: TransportError,
    },
    /// Receiving the peer's hello failed.
    #[error("failed to receive the hello: {source}")]
    ReceiveHello {
        /// The transport's failure.
        source: TransportError,
    },
    /// The peer closed the connection before it sent its hello.
    #[error("closed during the handshake")]
    Closed,
    /// The peer's first message was not a hello.
    #[error("expected hello, got {got}")]
    NotHello {
        /// The name of the message received.
        got: &'static str,
    },
    /// The peer speaks another protocol version.
    #[error(
        "protocol version {theirs} (this node speaks {ours}): nodes of different protocol versions do not form a cluster"
    )]
    ProtocolVersion {
        /// The peer's version.
        theirs: u16,
        /// This node's version.
        ours: u16,
    },
    /// The peer belongs to another cluster.
    #[error("cluster {theirs:?} (this node is in {ours:?})")]
    Cluster {
        /// The peer's cluster.
        theirs: String,
        /// This node's cluster.
        ours: String,
    },
}

/// Why a peer link could not be set up or ended, naming the step that failed. `peer` is the
/// peer's node name, or its address before the handshake told its name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The handshake failed.
    #[error("handshake with {peer} failed: {source}")]
    Handshake {
        /// The peer.
        peer: String,
        /// The step of the handshake that failed.
        source: HandshakeError,
    },
    /// Encoding a message into the send buffer failed.
    #[error("failed to send {message} to {peer}: {source}")]
    Send {
        /// The peer.
        peer: String,
        /// The name of the message.
        message: &'static str,
        /// The transport's failure.
        source: TransportError,
    },
    /// Writing the queued messages to the connection failed.
    #[error("failed to flush to {peer}: {source}")]
    Flush {
        /// The peer.
        peer: String,
        /// The transport's failure.
        source: TransportError,
    },
    /// Receiving a message failed.
    #[error("failed to receive from {peer}: {source}")]
    Receive {
        /// The peer.
        peer: String,
        /// The transport's failure.
        source: TransportError,
    },
    /// The link's urgent queue overflowed: the writer has not written for a long time (the
    /// peer does not read), so the link is closed rather than let the queue grow.
    #[error(
        "link to {peer} closed: {queued} requests queued and none written (the peer does not read)"
    )]
    OutboxFull {
        /// The peer.
        peer: String,
        /// The queue's bound.
        queued: usize,
    },
    /// The peer asked for something the protocol allows once at a time while one was still
    /// outstanding.
    #[error("peer {peer} sent a {message} while one was outstanding; closing the link")]
    TooManyRequests {
        /// The peer.
        peer: String,
        /// The name of the message.
        message: &'static str,
    },
    /// Nothing came from the peer for a whole peer timeout.
    #[error("peer {peer} timed out after {timeout_ms} ms without a message")]
    TimedOut {
        /// The peer.
        peer: String,
        /// The peer timeout.
        timeout_ms: u64,
    },
    /// The peer closed the connection.
    #[error("peer {peer} closed the connection")]
    PeerClosed {
        /// The peer.
        peer: String,
    },
    /// The other half of this link's tasks ended first (its own error is reported by its task).
    #[error("link to {peer} closed")]
    Stopped {
        /// The peer.
        peer: String,
    },
    /// The peer's address is no longer discovered, or the node shuts down.
    #[error("link to {peer} cancelled: peer removed or shutting down")]
    Cancelled {
        /// The peer.
        peer: String,
    },
    /// A task of the link (writer, answerer) panicked or was aborted.
    #[error("{task} task of the link to {peer} failed: {source}")]
    Task {
        /// The peer.
        peer: String,
        /// Which task.
        task: &'static str,
        /// The task's failure.
        source: JoinError,
    },
    /// Listing the keys of differing buckets (on the blocking pool) failed.
    #[error("failed to list bucket keys for {peer}: {source}")]
    ListKeys {
        /// The peer.
        peer: String,
        /// The listing task's failure.
        source: JoinError,
    },
    /// Comparing this node's keys with the peer's (on the blocking pool) failed.
    #[error("failed to compare bucket keys with {peer}: {source}")]
    CompareKeys {
        /// The peer.
        peer: String,
        /// The comparing task's failure.
        source: JoinError,
    },
    /// The repair task of an anti-entropy round failed.
    #[error("anti-entropy repair failed: {source}")]
    Repair {
        /// Why.
        source: Box<LinkError>,
    },
}

impl LinkError {
    /// Whether the peer was refused at the handshake: another protocol version or cluster. A
    /// human must act (finish the upgrade, fix the cluster name), so it is worth a warning,
    /// unlike a peer that is merely unreachable.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            LinkError::Handshake {
                source: HandshakeError::ProtocolVersion { .. } | HandshakeError::Cluster { .. },
                ..
            }
        )
    }
}
