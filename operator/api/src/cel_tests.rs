//! The CEL rules of the CRD, evaluated locally with kube's CEL validator, so a rule that does
//! not parse or says the wrong thing fails here rather than on a real API server.

use kube::core::cel::{validate_cel, validate_cel_update};

use crate::types::{SessionCluster, StorageMode, WriteAck};

fn cluster(spec: serde_json::Value) -> SessionCluster {
    let object = serde_json::json!({
        "apiVersion": "sessionstore.dev/v1alpha1",
        "kind": "SessionCluster",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": spec,
    });
    match serde_json::from_value(object) {
        Ok(cluster) => cluster,
        Err(error) => panic!("test spec does not parse: {error}"),
    }
}

fn errors_of(result: Result<(), kube::core::cel::ValidationErrors>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(errors) => format!("{errors:?}"),
    }
}

#[test]
fn defaults_fill_an_empty_spec() {
    let spec = cluster(serde_json::json!({})).spec;
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.storage.mode, StorageMode::Ram);
    assert_eq!(spec.replication.write_ack, WriteAck::One);
    assert_eq!(spec.sessions.default_timeout, "30m");
    assert_eq!(spec.sessions.max_timeout, "24h");
    assert_eq!(spec.memory.high_watermark, 0.8);
    assert_eq!(spec.memory.low_watermark, 0.7);
    assert!(spec.auth.enabled);
    assert_eq!(spec.service.port, 6379);
    assert_eq!(spec.shutdown_timeout, "20s");
}

#[test]
fn a_valid_disc_cluster_passes_every_rule() {
    let c = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
    assert_eq!(errors_of(validate_cel(&c)), "");
}

#[test]
fn disc_without_size_is_refused_with_a_hint() {
    let c = cluster(serde_json::json!({"storage": {"mode": "disc"}}));
    assert!(errors_of(validate_cel(&c)).contains("storage.size is required"));
}

#[test]
fn zero_replicas_is_refused_with_a_reason() {
    let c = cluster(serde_json::json!({"replicas": 0}));
    assert!(errors_of(validate_cel(&c)).contains("cannot be scaled to zero"));
    let c = cluster(serde_json::json!({"replicas": 1}));
    assert_eq!(errors_of(validate_cel(&c)), "");
}

#[test]
fn watermarks_must_be_ordered() {
    let c = cluster(serde_json::json!({"memory": {"highWatermark": 0.6, "lowWatermark": 0.7}}));
    assert!(errors_of(validate_cel(&c)).contains("lowWatermark must be below"));
}

#[test]
fn max_timeout_must_cover_default_timeout() {
    let c = cluster(serde_json::json!({"sessions": {"defaultTimeout": "2h", "maxTimeout": "90m"}}));
    assert!(errors_of(validate_cel(&c)).contains("maxTimeout must be at least"));
    let ok =
        cluster(serde_json::json!({"sessions": {"defaultTimeout": "90m", "maxTimeout": "2h"}}));
    assert_eq!(errors_of(validate_cel(&ok)), "");
}

#[test]
fn storage_mode_is_immutable() {
    let old = cluster(serde_json::json!({"storage": {"mode": "ram"}}));
    let new = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
    assert!(errors_of(validate_cel_update(&new, &old)).contains("storage.mode is immutable"));
}

#[test]
fn volumes_grow_but_never_shrink() {
    let old = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "2Gi"}}));
    let grown = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "3Gi"}}));
    let shrunk = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "1500Mi"}}));
    assert_eq!(errors_of(validate_cel_update(&grown, &old)), "");
    assert!(errors_of(validate_cel_update(&shrunk, &old)).contains("may grow but not shrink"));
}

#[test]
fn storage_size_is_a_quantity_string() -> anyhow::Result<()> {
    let bad = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "lots"}}));
    assert!(errors_of(validate_cel(&bad))
        .contains("storage.size must be a Kubernetes quantity such as 1Gi, 500Mi or 10G"));
    let crd = serde_json::to_value(<SessionCluster as kube::CustomResourceExt>::crd())?;
    let size = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["storage"]["properties"]["size"];
    // `kubectl explain` prints the `type`; without one it says `<Object>`.
    assert_eq!(size["type"], "string");
    assert_eq!(size.get("x-kubernetes-int-or-string"), None);
    assert!(size["description"]
        .as_str()
        .is_some_and(|d| d.contains("e.g. `1Gi`, `500Mi` or `10G`")));
    Ok(())
}

#[test]
fn storage_class_is_immutable() {
    let old = cluster(
        serde_json::json!({"storage": {"mode": "disc", "size": "1Gi", "storageClassName": "a"}}),
    );
    let new = cluster(
        serde_json::json!({"storage": {"mode": "disc", "size": "1Gi", "storageClassName": "b"}}),
    );
    assert!(errors_of(validate_cel_update(&new, &old)).contains("storageClassName is immutable"));
}
