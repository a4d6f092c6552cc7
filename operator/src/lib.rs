//! The SessionCluster operator: validate a spec, build the objects it needs, apply them with
//! server-side apply, report status. `main.rs` only parses the configuration and starts this.

pub mod apply;
pub mod controller;
pub mod metrics;
pub mod node_client;
pub mod resources;
pub mod status;
pub mod validate;

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod scenario_tests;
