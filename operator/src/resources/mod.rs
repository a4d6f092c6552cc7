//! Pure builders: one `build_<kind>` per Kubernetes object a SessionCluster owns. Each takes the
//! validated cluster (and whatever observed value it needs) and returns the full desired object,
//! ready for server-side apply. No I/O here.

mod config_map;
mod monitoring;
mod network_policy;
mod pdb;
mod secret;
mod service;
mod service_account;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use config_map::{build_config_map, config_hash};
pub use monitoring::{
    build_prometheus_rule, build_service_monitor, prometheus_rule_resource,
    service_monitor_resource,
};
pub use network_policy::build_network_policy;
pub use pdb::build_pod_disruption_budget;
pub use secret::{auth_hash, build_auth_secret};
pub use service::{build_client_service, build_headless_service};
pub use service_account::build_service_account;
pub use statefulset::{build_statefulset, StatefulSetInputs};

use crate::naming;
use crate::validate::ValidatedCluster;

/// Metadata of a child object: name, namespace, the standard labels, the owner reference.
pub(crate) fn child_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(naming::labels(&cluster.name)),
        owner_references: Some(vec![cluster.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Labels plus extra ones (the standard labels win).
pub(crate) fn labels_with(
    cluster: &ValidatedCluster,
    extra: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = extra.cloned().unwrap_or_default();
    labels.extend(naming::labels(&cluster.name));
    labels
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::validate::{tests::cluster, validate, ValidatedCluster};

    /// A validated cluster named `demo` in namespace `apps` from a JSON spec.
    pub(crate) fn validated(spec: serde_json::Value) -> ValidatedCluster {
        match validate(&cluster("demo", spec), "sessionstore/store-node:0.1.0") {
            Ok(validated) => validated,
            Err(error) => panic!("test spec is invalid: {error}"),
        }
    }
}
