//! Leaderless full replication between store-nodes (DESIGN.md §4, docs/replication.md).
//!
//! Every node holds every key. The replicated unit is a [`crate::store::Record`]: the whole state of a key
//! after a local write (a live value with its absolute expiry, or a tombstone), stamped with a
//! hybrid logical clock and the node id ([`crate::store::Stamp`]); every node keeps, per key,
//! the record with the greatest `(hlc, origin)`, so conflicting writes (including concurrent
//! hash updates) resolve the same way everywhere, in any delivery order. Sliding-expiry touches
//! are [`crate::store::Touch`]es: they extend the expiry of one exact version only, never resurrect a deleted
//! or overwritten value, and are coalesced per key before entering the log.
//!
//! Data paths, over one link per ordered pair of nodes (the dialer pushes, the acceptor
//! answers; every node dials every discovered peer, so each pair has two links):
//! - **log push**: local records and flushed touches get a sequence number in the [`OpLog`]
//!   and are pushed in batches; the acceptor applies them and acks cumulatively. Acks drive
//!   [`Replication::wait_acked`] (`--write-ack`) and the per-peer lag.
//! - **bootstrap**: an empty node streams a snapshot from one ready peer, then runs an
//!   anti-entropy round with every ready peer (which also closes the window between the
//!   snapshot and the live streams), then becomes ready.
//! - **anti-entropy**: every link periodically sends its 256 bucket digests; the acceptor
//!   answers with the `(key, stamp)` lists of the differing buckets; the dialer pushes what it
//!   has newer, asks for what the peer has newer, and ends the round. A completed round proves
//!   the peer holds the dialer's log up to the round's start, which closes the gap left when a
//!   peer fell off the bounded log or restarted.
//!
//! Tombstones are collected when older than the grace period *and* older, by the grace period,
//! than the start of the last completed anti-entropy round with every member peer: a peer that
//! is partitioned or down blocks collection, so it cannot bring back a deleted key afterwards.
//!
//! The node implements [`Replica`] for its engine (`crate::node::replica`) and starts
//! [`Replication::start`] before serving data commands; see docs/replication.md.

pub mod clock;
pub mod engine;
pub mod membership;
pub mod metrics;
pub mod oplog;
pub mod replica;
pub mod transport;
pub mod wire;

pub use clock::HybridClock;
pub use engine::{generate_node_id, Replication, ReplicationConfig};
pub use membership::{Discovery, PeerResolver, PeerStatus, StaticPeers};
pub use metrics::{MetricsSnapshot, ReplicationMetrics};
pub use oplog::OpLog;
pub use replica::{MemoryReplica, Replica};
pub use transport::{
    FaultyTransport, InMemoryNetwork, InMemoryTransport, TcpTransport, Transport, TransportFaults,
};
pub use wire::NodeState;

/// How many peers must hold a write before the client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAck {
    /// Answer after the local apply.
    None,
    /// One member peer acknowledged.
    One,
    /// Every member peer acknowledged (a down or partitioned member makes the write fail).
    All,
}

/// Replication failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// The peer listener could not be bound.
    #[error("failed to start replication: {0}")]
    Listen(String),
    /// Not enough peers acknowledged a write in time. The write is applied locally and will
    /// still replicate; the client is told it is not durable on enough nodes. The text starts
    /// with Redis's `NOREPLICAS` error code.
    #[error("NOREPLICAS Not enough good replicas to write: {acked} of {required} peer(s) acknowledged within {timeout_ms} ms")]
    NotEnoughReplicas {
        /// Peers that acknowledged.
        acked: usize,
        /// Peers required.
        required: usize,
        /// How long it waited.
        timeout_ms: u64,
    },
    /// Leaving timed out before these peers held every local write.
    #[error("left before these peers held every local write: {}", peers.join(", "))]
    LeaveIncomplete {
        /// The peers still behind.
        peers: Vec<String>,
    },
    /// The engine was shut down.
    #[error("replication is shut down")]
    Stopped,
}
