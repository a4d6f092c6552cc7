//! One node's shared state and the wiring of replication and persistence into the keyspace:
//! [`NodeState`] (what every handler shares), [`hook::NodeHook`] (the engine's write hook:
//! the log and the peers), [`write_ack`] (answering writes once their receipts hold),
//! [`cluster`] (starting replication, leaving the cluster), [`disc`] (disc mode's recovery,
//! snapshots and shutdown), [`replica`] (replication's view of the engine), [`cgroup`] (the
//! memory cgroup the node runs in), [`memory`] (the footprint the limit is compared with) and
//! [`sampler`] (the tick that samples it and exchanges the alarm with the peers).

pub mod cgroup;
pub mod cluster;
pub mod disc;
pub mod hook;
pub mod memory;
pub mod replica;
pub mod sampler;
pub mod state;
pub mod write_ack;

pub use state::{Lifecycle, NodeState};
