//! store-node: a Redis-compatible session store server. The library holds everything so tests
//! can start a node in-process ([`server::start`]); `main.rs` only parses flags, sets up logs
//! and waits for a signal.

pub mod cgroup;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod disc;
pub mod http;
pub mod io_threads;
pub mod metrics;
pub mod persistence;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod state;
pub mod store;
