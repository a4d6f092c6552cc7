//! store-node: a Redis-compatible session store server. The library holds everything so tests
//! can start a node in-process ([`server::start`]); `main.rs` only parses flags, sets up logs
//! and waits for a signal. ARCHITECTURE.md at the repository root maps the parts; from the
//! bottom up:
//! - [`protocol`], [`store`], [`metrics`], [`tls`], [`config`]: leaves (RESP framing; the
//!   keyspace engine with its value model and write hook; counters; TLS configurations from
//!   certificate files; flags).
//! - [`pubsub`], [`scripting`]: pub/sub subscriptions and delivery on one node; the Lua
//!   interpreter, its sandbox and libraries (commands reach it through a dispatcher).
//! - [`persistence`], [`replication`]: the write-ahead log and the peer protocol, each over
//!   the store's records.
//! - [`node`]: one node's shared state, and replication and the log plugged into the engine.
//! - [`commands`]: the Redis commands, over the node state.
//! - [`net`]: the RESP and HTTP listeners.
//! - [`server`]: start-up and shutdown, which puts the parts together.

pub mod commands;
pub mod config;
pub mod metrics;
pub mod net;
pub mod node;
pub mod persistence;
pub mod protocol;
pub mod pubsub;
pub mod replication;
pub mod scripting;
pub mod server;
pub mod store;
pub mod tls;
