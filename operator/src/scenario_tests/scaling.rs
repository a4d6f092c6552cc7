//! Scaling: up raises the StatefulSet at once, down asks the leaving nodes first; a scale-up is
//! no quorum loss until a ready node is lost; node gauges follow the scale-down and the deletion.

use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use sessionstore_api::SessionCluster;

use super::harness::{child_writes, Harness, CLUSTER};
use crate::controller::handle_outcome;

#[tokio::test]
async fn scale_up_raises_the_statefulset() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 3})).await;
    h.run_pods(3);
    let writes = h.reconcile(json!({"replicas": 5})).await;
    assert_eq!(
        child_writes(&writes),
        ["PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo"]
    );
    assert_eq!(h.sts_replicas(), 5);
    assert_eq!(h.condition("Progressing").1, "ScalingUp");
}

#[tokio::test]
async fn scale_down_asks_leaving_nodes_first() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 3, "auth": {"enabled": false}}))
        .await;
    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    h.reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    assert_eq!(
        h.nodes.leaves.lock().map(|l| l.clone()).unwrap_or_default(),
        vec!["10.0.0.3:8080".to_owned()]
    );
    assert_eq!(h.sts_replicas(), 3, "replicas stay until the node left");
    assert_eq!(h.condition("Progressing").1, "ScalingDown");

    assert_eq!(
        h.api.get(CLUSTER).unwrap_or_default()["status"]["scaleDown"]["leaving"],
        json!(["demo-2"])
    );

    h.node(2, 3, "left", false);
    h.reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    assert_eq!(h.sts_replicas(), 2);
    // The status is a merge patch: the finished scale-down must be removed with an explicit
    // null, or it stays forever and every later reconcile writes the status again.
    assert_eq!(
        h.api.get(CLUSTER).unwrap_or_default()["status"].get("scaleDown"),
        None
    );
    h.run_pods(2);
    h.node(0, 2, "ready", false);
    h.node(1, 2, "ready", false);
    h.reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    let writes = h
        .reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    assert_eq!(writes, Vec::<String>::new(), "steady after the scale-down");
}

#[tokio::test]
async fn a_scale_up_warns_of_no_quorum_loss_until_a_ready_node_is_lost() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 1})).await;
    h.run_pods(1);
    h.node(0, 1, "ready", false);
    h.reconcile(json!({"replicas": 1})).await;
    assert_eq!(h.condition("Available").0, "True");

    h.reconcile(json!({"replicas": 3})).await;
    // The new pods exist and are starting.
    h.statefulset_status(3, 1);
    h.pod(1, false);
    h.pod(2, false);
    h.reconcile(json!({"replicas": 3})).await;
    h.reconcile(json!({"replicas": 3})).await;
    let (status, reason, _) = h.condition("Available");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ScalingUp"));
    let warnings: Vec<_> = h
        .events()
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert_eq!(warnings, Vec::<(String, String)>::new());

    // demo-0 goes away while the new pods are still starting: quorum is really lost.
    h.statefulset_status(3, 0);
    h.pod(0, false);
    h.reconcile(json!({"replicas": 3})).await;
    assert_eq!(h.condition("Available").1, "QuorumLost");
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "QuorumLost".to_owned())));
}

#[tokio::test]
async fn node_gauges_go_with_a_scale_down_and_with_the_cluster() {
    let h = Harness::new();
    let spec = |replicas: i64| json!({"replicas": replicas, "auth": {"enabled": false}});
    h.reconcile(spec(3)).await;
    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    h.reconcile(spec(3)).await;
    assert_eq!(h.gauge_nodes(), ["demo-0", "demo-1", "demo-2"]);

    // 3 -> 2: demo-2 leaves, then the StatefulSet is lowered.
    h.reconcile(spec(2)).await;
    assert_eq!(
        h.gauge_nodes(),
        ["demo-0", "demo-1", "demo-2"],
        "still a member while leaving"
    );
    h.node(2, 3, "left", false);
    h.reconcile(spec(2)).await;
    assert_eq!(h.sts_replicas(), 2);
    assert_eq!(h.gauge_nodes(), ["demo-0", "demo-1"]);

    // A node that does not answer once keeps its gauges.
    if let Ok(mut statuses) = h.nodes.statuses.lock() {
        statuses.remove("10.0.0.2:8080");
    }
    h.reconcile(spec(2)).await;
    assert_eq!(h.gauge_nodes(), ["demo-0", "demo-1"]);

    // Deleted: the controller's next look at it finds no object.
    let gone = ObjectRef::<SessionCluster>::new("demo")
        .within("apps")
        .erase();
    handle_outcome(
        &h.ctx,
        Err(kube::runtime::controller::Error::ObjectNotFound(Box::new(
            gone,
        ))),
    );
    assert_eq!(h.gauge_nodes(), Vec::<String>::new());
}
