//! Disc mode: a write-ahead log of [`Record`](crate::store::Record)s with group commit, periodic
//! fuzzy snapshots that bound the log, and recovery at start (DESIGN.md §4, docs/persistence.md).
//!
//! What is logged is the whole state of a key after a write, stamped, exactly the unit that
//! replication ships (local writes and records applied from peers alike). Records merge by
//! last-writer-wins ([`crate::store::record::merge`]), so replay is idempotent and
//! order-insensitive. That makes a fuzzy snapshot correct: start a new log segment, dump the
//! keyspace through the store's chunked iterator while writes go on, fsync and rename it, then
//! delete the older segments. Recovery loads the newest snapshot and merges every later segment.
//!
//! Why not fjall or redb: the whole keyspace already lives in RAM; an LSM tree or B-tree would
//! keep a second, indexed copy with its own log, compaction and write amplification, to answer
//! reads nobody makes (reads are served from memory). An append-only log of idempotent records
//! plus snapshots (Redis's AOF + RDB) is the minimal durable structure for an in-memory store.
//!
//! Directory layout (`--data-dir`): `node-id` (the node keeps its identity across restarts),
//! `LOCK` (held while open), `wal-<seq>.log` segments, `snapshot-<seq>.snap` (holds everything
//! before segment `seq`), a transient `snapshot.tmp`, and `damaged-<unix-time>/` quarantines.
//! The file format is in [`format`](mod@format).
//!
//! Contract with the caller (the node's write hook): append a record *after* it is applied and
//! visible in the store. Then a record in a segment older than a snapshot was in the store
//! before the snapshot's dump began, so deleting that segment loses nothing.
//!
//! Dependencies, all downward: [`crate::store`] for the record, its view and its merge rule;
//! [`crate::config`] for the `--fsync` mode; and `crate::replication::wire`, for framing only,
//! through [`format`](mod@format) alone. The log's files are sequences of peer frames (a log
//! record is a `RepairRecords` frame, a snapshot a run of `SnapshotChunk` frames closed by a
//! `SnapshotEnd`), so a record has one byte encoding and one checksummed framing whether it
//! goes to a peer or to disc, and the two cannot drift apart. Nothing else of replication is
//! used: the node id of a fresh directory comes from the caller
//! ([`PersistenceConfig::fresh_node_id`]). Persistence never reaches up into `node`,
//! `commands`, `net` or `server`; the node plugs the log into the engine's write path.
//!
//! Files: `handle` (the [`Persistence`] handle: open, append, wait, stop), `wal/` (the log:
//! queue, group commit, segments, the writer thread), `snapshot`, [`recovery`], `directory`
//! (lock, node id, listing, quarantine), [`format`](mod@format), `cache` (page-cache advice),
//! [`metrics`], [`error`].

mod cache;
mod directory;
pub mod error;
pub mod format;
mod handle;
pub mod metrics;
pub mod recovery;
mod snapshot;
mod wal;

pub use directory::quarantine;
pub use error::PersistenceError;
pub use handle::{Persistence, PersistenceConfig};
pub use metrics::{PersistenceMetrics, PersistenceMetricsSnapshot};
pub use recovery::{
    Recovered, RecoveryPhase, RecoveryProgress, RecoveryProgressSnapshot, RecoveryReport,
    Truncation,
};
pub use snapshot::SnapshotReport;
pub use wal::WriterFault;
