//! One node's shared state and the wiring of replication and persistence into the keyspace:
//! [`NodeState`] (what every handler shares), [`hook::NodeHook`] (the engine's write hook:
//! the log and the peers), [`write_ack`] (answering writes once their receipts hold),
//! [`cluster`] (starting replication, leaving the cluster), [`disc`] (disc mode's recovery,
//! snapshots and shutdown), [`replica`] (replication's view of the engine), [`cgroup`] (the
//! memory cgroup the node runs in), [`memory`] (the footprint the limit is compared with),
//! [`sampler`] (the tick that samples it and exchanges the alarm with the peers), [`security`]
//! (TLS, the peer key, [`users`] and the operator token, re-read by [`reload`] when their files
//! change) and [`client_limits`] (request and buffer limits of clients).

pub mod cgroup;
pub mod client_limits;
pub mod cluster;
pub mod disc;
pub mod hook;
pub mod memory;
pub mod reload;
pub mod replica;
pub mod sampler;
pub mod security;
pub mod state;
pub mod users;
pub mod write_ack;

pub use state::{Lifecycle, NodeState};
