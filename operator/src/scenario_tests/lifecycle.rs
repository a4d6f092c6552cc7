//! A cluster's life at rest: creation applies every child once, then a steady cluster costs no
//! writes (canonicalised quantities included); a configuration change rolls the pods; a paused
//! or invalid spec touches no child.

use serde_json::json;

use super::harness::{child_writes, Harness, CLUSTER, STS};

#[tokio::test]
async fn create_applies_every_child_then_a_steady_rereconcile_writes_nothing() {
    let h = Harness::new();
    let writes = h.reconcile(json!({})).await;
    let expected = [
        "PATCH /api/v1/namespaces/apps/serviceaccounts/demo-node",
        "PATCH /api/v1/namespaces/apps/configmaps/demo-config",
        "POST /api/v1/namespaces/apps/secrets",
        "PATCH /api/v1/namespaces/apps/services/demo-headless",
        "PATCH /api/v1/namespaces/apps/services/demo",
        "PATCH /apis/policy/v1/namespaces/apps/poddisruptionbudgets/demo",
        "PATCH /apis/networking.k8s.io/v1/namespaces/apps/networkpolicies/demo",
        "PATCH /api/v1/namespaces/apps/secrets/demo-peer-key",
        "PATCH /api/v1/namespaces/apps/secrets/demo-operator-token",
        "PATCH /api/v1/namespaces/apps/secrets/demo-node-auth",
        "PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo",
    ];
    assert_eq!(child_writes(&writes), expected);
    assert!(writes.contains(&format!("PATCH {CLUSTER}/status")));
    assert_eq!(h.sts_replicas(), 3);
    assert_eq!(h.condition("Progressing").0, "True");

    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    let writes = h.reconcile(json!({})).await;
    assert!(child_writes(&writes).is_empty(), "{writes:?}");
    assert_eq!(h.condition("Available").0, "True");
    assert_eq!(h.condition("Clustered").0, "True");

    let writes = h.reconcile(json!({})).await;
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "a steady cluster costs no writes"
    );
}

#[tokio::test]
async fn quantities_the_api_server_canonicalises_cause_no_rewrite() {
    let h = Harness::new();
    let spec = json!({"replicas": 1, "resources": {
        "requests": {"cpu": "1000m", "memory": "0.5Gi"},
        "limits": {"cpu": "1000m", "memory": "0.5Gi"}}});
    h.reconcile(spec.clone()).await;
    let stored = h.api.get(STS).unwrap_or_default();
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1",
        "the mock canonicalises like the API server"
    );
    h.run_pods(1);
    h.node(0, 1, "ready", false);
    h.reconcile(spec.clone()).await;
    let writes = h.reconcile(spec).await;
    assert_eq!(writes, Vec::<String>::new(), "1000m and 1 are the same CPU");
}

#[tokio::test]
async fn config_change_rolls_the_pods() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    let before = h.config_hash();
    let writes = h
        .reconcile(json!({"replication": {"writeAck": "all"}}))
        .await;
    assert!(writes.contains(&"PATCH /api/v1/namespaces/apps/configmaps/demo-config".to_owned()));
    assert_ne!(h.config_hash(), before);
    assert_eq!(h.config_hash().len(), 64);
}

#[tokio::test]
async fn paused_changes_nothing_but_the_condition() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    let writes = h.reconcile(json!({"paused": true, "replicas": 7})).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(h.sts_replicas(), 3);
    assert_eq!(h.condition("Paused").0, "True");
}

#[tokio::test]
async fn invalid_spec_is_reported_without_touching_children() {
    let h = Harness::new();
    let writes = h
        .reconcile(json!({"sessions": {"defaultTimeout": "2h", "maxTimeout": "1h"}}))
        .await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    let (status, reason, message) = h.condition("ReconcileSuccess");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("raise maxTimeout"));
    assert!(
        writes.iter().any(|w| w.contains("/events")),
        "a Warning event: {writes:?}"
    );
}
