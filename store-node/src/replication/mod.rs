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
//!
//! Files by job, none using a file that uses it back: `handle` (the [`Replication`] API)
//! starts the accept loop of `link`, `discovery` (the peer table, one outgoing link per
//! address), `bootstrap` (the first-start rule), `touches` (coalescing, flushing) and
//! `tombstones` (collection); `link` (handshake, inbound and outbound sessions, outbox) runs
//! the protocol and hands the serving of snapshots to `bootstrap` and the work of rounds to
//! `anti_entropy`; every job shares `shared` (state, peer table) and reads `config`
//! ([`ReplicationConfig`]). Below them: [`wire`] (messages, frames), [`transport`] (TCP,
//! in-memory, faulty), [`oplog`], [`clock`], [`membership`], [`replica`] and [`metrics`];
//! [`prometheus`] renders a handle's counters for `/metrics`.

mod anti_entropy;
mod bootstrap;
pub mod clock;
mod config;
mod discovery;
mod handle;
mod link;
pub mod membership;
pub mod metrics;
pub mod oplog;
pub mod prometheus;
pub mod replica;
mod shared;
mod tombstones;
mod touches;
pub mod transport;
pub mod wire;

pub use clock::HybridClock;
pub use config::{generate_node_id, ReplicationConfig};
pub use handle::{Replication, ReplicationError, WriteAck};
pub use link::publish::{PublishCounts, PublishSink};
pub use membership::{Discovery, PeerResolver, PeerStatus, StaticPeers};
pub use metrics::{MetricsSnapshot, ReplicationMetrics};
pub use oplog::OpLog;
pub use replica::{MemoryReplica, Replica};
pub use transport::{
    FaultyTransport, InMemoryNetwork, InMemoryTransport, PeerKeyError, PeerKeys, PeerRefusals,
    PeerSecurity, TcpTransport, Transport, TransportFaults,
};
pub use wire::NodeState;
