//! The exchange of hellos that opens every link: each end announces its cluster, protocol
//! version, name, incarnation id, address and state; a peer of another cluster or protocol
//! version is refused (the acceptor answers its own hello first, so both ends know why, and
//! each end warns once per peer and reason rather than at every redial), and a hello from this
//! very node (its own address discovered) is recognised so the link is dropped.

use tracing::{debug, warn};

use super::error::{HandshakeError, LinkError};
use crate::replication::metrics::ReplicationMetrics;
use crate::replication::shared::Shared;
use crate::replication::transport::{Connection, MessageSender, PeerRefusals};
use crate::replication::wire::{Hello, Message, PROTOCOL_VERSION};

/// This node's hello.
pub(crate) fn hello(shared: &Shared) -> Message {
    Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster: shared.config.cluster.clone(),
        node_name: shared.config.node_name.clone(),
        node_id: shared.config.node_id,
        advertise: shared
            .config
            .advertise_address
            .clone()
            .unwrap_or_else(|| shared.local_address.clone()),
        state: *shared.state.borrow(),
        has_data: !shared.replica.is_empty(),
    })
}

/// Refuses a peer of another protocol version or cluster.
pub(crate) fn validate_hello(shared: &Shared, hello: &Hello) -> Result<(), HandshakeError> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(HandshakeError::ProtocolVersion {
            theirs: hello.protocol_version,
            ours: PROTOCOL_VERSION,
        });
    }
    if hello.cluster != shared.config.cluster {
        return Err(HandshakeError::Cluster {
            theirs: hello.cluster.clone(),
            ours: shared.config.cluster.clone(),
        });
    }
    Ok(())
}

/// Logs that the peer at `peer` (an address or a node name) was refused for `reason`: a
/// warning the first time, at debug level at every redial after that.
pub(crate) fn note_refusal(shared: &Shared, peer: &str, reason: &str) {
    if shared.refused.lock().insert(format!("{peer} {reason}")) {
        warn!(peer = %peer, %reason, "refusing peer");
    } else {
        debug!(peer = %peer, %reason, "refusing peer");
    }
}

/// Whether the hello comes from this node (by id, or by name: a previous incarnation's address
/// may still be listed).
pub(crate) fn is_self(shared: &Shared, hello: &Hello) -> bool {
    hello.node_id == shared.config.node_id || hello.node_name == shared.config.node_name
}

/// Sends this node's hello.
pub(crate) async fn send_hello(
    shared: &Shared,
    sender: &mut Box<dyn MessageSender>,
) -> Result<(), HandshakeError> {
    let bytes = sender
        .send(hello(shared))
        .await
        .map_err(|source| HandshakeError::SendHello { source })?;
    ReplicationMetrics::add(&shared.metrics.bytes_sent, bytes as u64);
    Ok(())
}

/// The dialer's half: connects to `address`, sends this node's hello and reads the peer's.
pub(crate) async fn handshake(
    shared: &Shared,
    address: &str,
) -> Result<(Connection, Hello), LinkError> {
    dial(shared, address)
        .await
        .map_err(|source| LinkError::Handshake {
            peer: address.to_string(),
            source,
        })
}

async fn dial(shared: &Shared, address: &str) -> Result<(Connection, Hello), HandshakeError> {
    let mut connection = shared
        .transport
        .connect(address)
        .await
        .map_err(|source| HandshakeError::Connect { source })?;
    send_hello(shared, &mut connection.sender).await?;
    match connection.receiver.recv().await {
        Ok(Some((Message::Hello(peer), bytes))) => {
            ReplicationMetrics::add(&shared.metrics.bytes_received, bytes as u64);
            if let Err(refused) = validate_hello(shared, &peer) {
                PeerRefusals::count(&shared.config.peer_refusals.hello);
                return Err(refused);
            }
            Ok((connection, peer))
        }
        Ok(Some((other, _))) => Err(HandshakeError::NotHello { got: other.name() }),
        Ok(None) => Err(HandshakeError::Closed),
        Err(source) => Err(HandshakeError::ReceiveHello { source }),
    }
}
