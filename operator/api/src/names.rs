//! Every object name, label and selector of a SessionCluster comes from here, so the headless
//! Service, the `CLUSTER_SERVICE_NAME` env, the pod names and what the e2e suite looks up cannot
//! disagree (docs/contract.md). Plain functions of the cluster name: no Kubernetes types.

use std::collections::BTreeMap;

use crate::constants::{
    LABEL_COMPONENT, LABEL_COMPONENT_VALUE, LABEL_INSTANCE, LABEL_MANAGED_BY,
    LABEL_MANAGED_BY_VALUE, LABEL_NAME, LABEL_NAME_VALUE, PEER_PORT,
};

/// Longest SessionCluster name: the StatefulSet adds `-<ordinal>` to pod names and a
/// `-<10-character hash>` to the controller-revision-hash label, which must stay within 63.
pub const MAX_CLUSTER_NAME_LEN: usize = 52;

/// Name of the volume (and volumeClaimTemplate) holding node data.
pub const DATA_VOLUME: &str = "data";
/// Mount path of the data volume; store-node's `--data-dir`.
pub const DATA_DIR: &str = "/data";
/// Directory the auth Secret is mounted at.
pub const AUTH_MOUNT_DIR: &str = "/etc/sessionstore/auth";
/// The password file store-node reads (`--password-file`).
pub const PASSWORD_FILE: &str = "/etc/sessionstore/auth/password";
/// Name of the store-node container.
pub const CONTAINER_NAME: &str = "store-node";
/// Extra label telling the client Service from the headless one (ServiceMonitor selector).
pub const LABEL_SERVICE_ROLE: &str = "sessionstore.dev/service";

/// The StatefulSet.
pub fn statefulset(cluster: &str) -> String {
    cluster.to_owned()
}

/// The headless Service the nodes resolve to find their peers.
pub fn headless_service(cluster: &str) -> String {
    format!("{cluster}-headless")
}

/// The value of `CLUSTER_SERVICE_NAME`: the headless Service, by construction.
pub fn cluster_service_name(cluster: &str) -> String {
    headless_service(cluster)
}

/// The port peers replicate on: the headless Service exposes it and the node listens on it.
pub fn peer_port() -> i32 {
    PEER_PORT
}

/// The client Service.
pub fn client_service(cluster: &str) -> String {
    cluster.to_owned()
}

/// The ConfigMap of `STORE_NODE_*` settings.
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// The generated password Secret.
pub fn auth_secret(cluster: &str) -> String {
    format!("{cluster}-auth")
}

/// The Secret the nodes mount: the passwords they accept, one per line (the current one, and
/// the previous one while a new password rolls out). The operator writes it from the auth
/// Secret; users never edit it.
pub fn node_auth_secret(cluster: &str) -> String {
    format!("{cluster}-node-auth")
}

/// The nodes' ServiceAccount.
pub fn service_account(cluster: &str) -> String {
    format!("{cluster}-node")
}

/// The PodDisruptionBudget.
pub fn pod_disruption_budget(cluster: &str) -> String {
    cluster.to_owned()
}

/// The NetworkPolicy.
pub fn network_policy(cluster: &str) -> String {
    cluster.to_owned()
}

/// The ServiceMonitor and the PrometheusRule.
pub fn monitoring(cluster: &str) -> String {
    cluster.to_owned()
}

/// Pod `ordinal` of the StatefulSet.
pub fn pod(cluster: &str, ordinal: i32) -> String {
    format!("{}-{ordinal}", statefulset(cluster))
}

/// The volume claim of pod `ordinal` (StatefulSet naming: `<template>-<pod>`).
pub fn volume_claim(cluster: &str, ordinal: i32) -> String {
    format!("{DATA_VOLUME}-{}", pod(cluster, ordinal))
}

/// The ordinal of a pod of this cluster, from its name.
pub fn ordinal_of(cluster: &str, pod_name: &str) -> Option<i32> {
    pod_name
        .strip_prefix(&statefulset(cluster))?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// Labels on every object of the cluster.
pub fn labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), LABEL_NAME_VALUE.to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.to_owned()),
        (
            LABEL_MANAGED_BY.to_owned(),
            LABEL_MANAGED_BY_VALUE.to_owned(),
        ),
        (LABEL_COMPONENT.to_owned(), LABEL_COMPONENT_VALUE.to_owned()),
    ])
}

/// The pod selector: the `name` and `instance` labels.
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), LABEL_NAME_VALUE.to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.to_owned()),
    ])
}

/// The pod selector as a label selector string (status `selector`, list calls).
pub fn selector_string(cluster: &str) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Selector of the store-node pods of every cluster the operator manages (its pod watch).
pub fn pod_watch_selector() -> String {
    format!("{LABEL_NAME}={LABEL_NAME_VALUE},{}", managed_selector())
}

/// Selector of everything the operator manages, for its watches.
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={LABEL_MANAGED_BY_VALUE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(statefulset("demo"), "demo");
        assert_eq!(headless_service("demo"), "demo-headless");
        assert_eq!(cluster_service_name("demo"), headless_service("demo"));
        assert_eq!(client_service("demo"), "demo");
        assert_eq!(config_map("demo"), "demo-config");
        assert_eq!(auth_secret("demo"), "demo-auth");
        assert_eq!(node_auth_secret("demo"), "demo-node-auth");
        assert_eq!(service_account("demo"), "demo-node");
        assert_eq!(pod_disruption_budget("demo"), "demo");
        assert_eq!(pod("demo", 2), "demo-2");
        assert_eq!(volume_claim("demo", 2), "data-demo-2");
        assert_eq!(peer_port(), 7379);
    }

    #[test]
    fn ordinals_parse_only_for_this_cluster() {
        assert_eq!(ordinal_of("demo", "demo-4"), Some(4));
        assert_eq!(ordinal_of("demo", "demo-x-1"), None);
        assert_eq!(ordinal_of("demo", "other-1"), None);
    }

    #[test]
    fn selector_is_name_and_instance() {
        assert_eq!(
            selector_string("demo"),
            "app.kubernetes.io/instance=demo,app.kubernetes.io/name=store-node"
        );
        assert_eq!(labels("demo").len(), 4);
    }
}
