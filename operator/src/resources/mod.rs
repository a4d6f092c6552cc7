//! Pure builders: one `build_<kind>` per Kubernetes object a SessionCluster owns. Each takes the
//! validated cluster (and whatever observed value it needs) and returns the full desired object,
//! ready for server-side apply. No I/O here.

pub mod certificate;
mod config_map;
mod meta;
mod monitoring;
mod network_policy;
mod pdb;
mod secret;
mod secret_volumes;
mod service;
mod service_account;
mod statefulset;
#[cfg(test)]
pub(crate) mod test_support;

pub use config_map::{build_config_map, build_users_config_map, config_hash};
pub use monitoring::{
    build_prometheus_rule, build_service_monitor, prometheus_rule_resource,
    service_monitor_resource,
};
pub use network_policy::build_network_policy;
pub use pdb::build_pod_disruption_budget;
pub use secret::{
    build_auth_secret, build_key_secret, build_node_auth_secret, build_tls_secret, tls_data,
    TlsSecretKind, REVISION_KEY,
};
pub use service::{build_client_service, build_headless_service};
pub use service_account::build_service_account;
pub use statefulset::{build_statefulset, StatefulSetInputs};
