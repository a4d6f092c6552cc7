//! The status tells the truth: readiness from the pods themselves (deleted pods are not ready,
//! pods a scale-down removes are not counted), a paused spec is not reported as applied, a full
//! restart that lost every session says so, a memory limit with too little headroom is warned
//! about, and the member watch follows the nodes between reconciles.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use sessionstore_api::node_status::NodeStatus;

use super::harness::{child_writes, Harness, STS};
use crate::controller::MemberWatch;

#[tokio::test]
async fn deleted_pods_are_not_ready_whatever_the_statefulset_still_counts() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    assert_eq!(h.condition("Available").0, "True");
    // `kubectl delete pods --all`: each pod is terminating, its Ready condition still True, and
    // the StatefulSet's status still says 3 ready.
    for i in 0..3 {
        let path = format!("/api/v1/namespaces/apps/pods/demo-{i}");
        if let Some(mut pod) = h.api.get(&path) {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            h.api.put(&path, pod);
        }
    }
    h.reconcile(json!({})).await;
    assert_eq!(
        h.condition("Available"),
        (
            "False".into(),
            "QuorumLost".into(),
            "0 of 3 nodes ready (quorum 2)".into()
        )
    );
    assert_eq!(h.status()["ready"], "0/3");
    assert_eq!(h.status()["readyReplicas"], 0);
}

#[tokio::test]
async fn a_scale_down_counts_the_nodes_asked_for_never_3_of_1() {
    let h = Harness::new();
    let spec = |replicas: i64| json!({"replicas": replicas, "auth": {"enabled": false}});
    h.reconcile(spec(3)).await;
    h.run_ready(3);
    h.reconcile(spec(3)).await;
    h.node(1, 3, "left", false);
    h.node(2, 3, "left", false);
    h.reconcile(spec(1)).await;
    assert_eq!(h.api.get(STS).unwrap_or_default()["spec"]["replicas"], 1);
    // The removed pods still exist, shutting down.
    assert_eq!(
        h.condition("Available"),
        (
            "True".into(),
            "AllNodesReady".into(),
            "1 of 1 node ready (quorum 1)".into()
        )
    );
    assert_eq!(h.status()["ready"], "1/1");
    assert_eq!(
        h.condition("Progressing").2,
        "2 removed nodes shutting down"
    );
}

#[tokio::test]
async fn a_paused_spec_is_not_reported_as_applied() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    assert_eq!(h.status()["observedGeneration"], 1);

    h.generation.store(2, Ordering::Relaxed);
    let writes = h.reconcile(json!({"paused": true, "replicas": 5})).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(
        h.status()["observedGeneration"],
        1,
        "generation 2 is not applied"
    );
    assert_eq!(
        h.condition("ReconcileSuccess"),
        (
            "False".into(),
            "Paused".into(),
            "spec.paused is true: generation 2 of the spec is not applied (the cluster runs generation 1); set paused: false to apply it".into()
        )
    );
    assert_eq!(h.condition("Paused").0, "True");
    let warnings: Vec<_> = h
        .events()
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert_eq!(
        warnings,
        Vec::<(String, String)>::new(),
        "pausing is no trouble"
    );

    h.generation.store(3, Ordering::Relaxed);
    h.reconcile(json!({"replicas": 5})).await;
    assert_eq!(h.status()["observedGeneration"], 3);
    assert_eq!(h.condition("ReconcileSuccess").0, "True");
    assert_eq!(h.condition("Paused").0, "False");
    assert_eq!(h.api.get(STS).unwrap_or_default()["spec"]["replicas"], 5);
}

impl Harness {
    /// Node `ordinal` of three, ready, as process `id` holding `keys` that came from `origin`.
    fn node_holding(&self, ordinal: i64, id: &str, keys: u64, origin: &str) {
        let peers: Vec<i64> = (0..3).filter(|i| *i != ordinal).collect();
        self.node_as(
            ordinal,
            &peers,
            "ready",
            false,
            |status: &mut NodeStatus| {
                status.node_id = id.into();
                status.keys = keys;
                status.data_origin = Some(origin.into());
            },
        );
    }
}

#[tokio::test]
async fn every_node_restarting_empty_says_sessions_lost_once() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_pods(3);
    h.node_holding(0, "demo-0-a", 120, "empty");
    h.node_holding(1, "demo-1-a", 120, "peer");
    h.node_holding(2, "demo-2-a", 120, "peer");
    h.reconcile(json!({})).await;
    assert_eq!(
        h.status()["data"]["heldBy"],
        json!(["demo-0-a", "demo-1-a", "demo-2-a"])
    );

    // Every pod was deleted and came back as new processes that found nothing to copy.
    for i in 0..3 {
        h.node_holding(i, &format!("demo-{i}-b"), 0, "empty");
    }
    h.reconcile(json!({})).await;
    let lost = h.notes_of("SessionsLost");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].starts_with("every node restarted at ")
            && lost[0].ends_with(" with nothing to recover, so the sessions they held (up to 120 keys per node) are lost and clients must create them again; storage.mode ram keeps sessions only in memory; storage.mode disc survives a restart of every node"),
        "{}",
        lost[0]
    );
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "SessionsLost".to_owned())));
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "SessionsLost"));
    assert_eq!(message, lost[0]);

    h.reconcile(json!({})).await;
    assert_eq!(h.notes_of("SessionsLost").len(), 1, "once");
}

#[tokio::test]
async fn a_rolling_restart_loses_no_sessions() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_pods(3);
    for i in 0..3 {
        h.node_holding(i, &format!("demo-{i}-a"), 50, "peer");
    }
    h.reconcile(json!({})).await;
    for i in 0..3 {
        h.node_holding(i, &format!("demo-{i}-b"), 50, "peer");
    }
    h.reconcile(json!({})).await;
    assert_eq!(h.notes_of("SessionsLost"), Vec::<String>::new());
    assert_eq!(h.condition("Degraded").0, "False");
}

#[tokio::test]
async fn a_memory_limit_with_too_little_headroom_is_warned_about_once() {
    let h = Harness::new();
    let spec = json!({"resources": {"limits": {"memory": "64Mi"}}});
    h.reconcile(spec.clone()).await;
    h.run_ready(3);
    h.reconcile(spec.clone()).await;
    let warning = "resources.limits.memory 64Mi with memory.highWatermark 0.8 leaves 12.8Mi above the high watermark, and a node needs about 24Mi there (serving a snapshot to a starting peer, replication and connection buffers, bursts of large writes): the kernel may kill it before it refuses writes. Raise the limit to at least 120Mi or lower memory.highWatermark to 0.62";
    assert_eq!(h.notes_of("MemoryHeadroomLow"), [warning]);
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "MemoryHeadroomLow".to_owned())));
    assert_eq!(
        h.condition("MemoryPressure").2,
        format!("every node is below its high watermark; warning: {warning}")
    );
}

#[tokio::test]
async fn the_member_watch_polls_fast_while_a_node_nears_its_watermark() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    assert_eq!(h.ctx.member_watch.is_fast("apps/demo"), Some(false));
    h.node_as(1, &[0, 2], "ready", false, |status| {
        status.memory.used_bytes = 75;
        status.memory.high_watermark_bytes = 80;
    });
    h.reconcile(json!({})).await;
    assert_eq!(h.ctx.member_watch.is_fast("apps/demo"), Some(true));
}

#[tokio::test]
async fn the_member_watch_triggers_a_reconcile_when_a_node_changes() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    let cluster: sessionstore_api::SessionCluster =
        match serde_json::from_value(h.api.get(super::harness::CLUSTER).unwrap_or_default()) {
            Ok(cluster) => cluster,
            Err(error) => panic!("bad cluster: {error}"),
        };
    let watch = MemberWatch::new(Duration::ZERO, Duration::ZERO);
    let mut other_namespace = watch.subscribe(Some("elsewhere".into()));
    let mut triggers = watch.subscribe(Some("apps".into()));
    let addresses: Vec<crate::node_client::NodeAddress> = (1..=3)
        .map(|i| crate::node_client::NodeAddress::plain(format!("10.0.0.{i}:8080")))
        .collect();
    let statuses = |h: &Harness| -> Vec<NodeStatus> {
        let statuses = h
            .nodes
            .statuses
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        addresses
            .iter()
            .filter_map(|a| statuses.get(&a.socket).cloned())
            .collect()
    };
    watch.record(&cluster, addresses.clone(), &statuses(&h), false);
    assert_eq!(watch.poll_due(h.nodes.as_ref()).await, 0, "nothing changed");

    h.node(2, 3, "ready", true);
    assert_eq!(
        watch.poll_due(h.nodes.as_ref()).await,
        1,
        "demo-2 raised its alarm"
    );
    assert_eq!(
        triggers.try_recv().ok().map(|r| r.name),
        Some("demo".to_owned())
    );
    assert!(other_namespace.try_recv().is_err());
    assert_eq!(watch.poll_due(h.nodes.as_ref()).await, 0, "once per change");
}
