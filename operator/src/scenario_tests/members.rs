//! What the members report: memory pressure, and the requeue that polls unsynced or loading
//! members again soon with a bounded backoff.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::json;

use super::harness::{child_writes, Harness, CLUSTER};

#[tokio::test]
async fn memory_pressure_comes_from_members() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_pods(3);
    h.node(0, 3, "ready", false);
    h.node(1, 3, "ready", true);
    h.node(2, 3, "ready", false);
    let writes = h.reconcile(json!({})).await;
    let (status, _, message) = h.condition("MemoryPressure");
    assert_eq!(status, "True");
    assert!(
        message.starts_with("demo-1 at 90% of its memory limit"),
        "{message}"
    );
    assert!(writes.iter().any(|w| w.contains("/events")));
    let cluster = h.api.get(CLUSTER).unwrap_or_default();
    assert_eq!(cluster["status"]["memory"], "90%");
}

#[tokio::test]
async fn unsynced_members_are_polled_again_soon_with_a_bounded_backoff() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_pods(3);
    // demo-0 restarted and is ready; demo-1 and demo-2 have not reconnected to it yet.
    h.node_seeing(0, &[1, 2], "ready", false);
    h.node_seeing(1, &[2], "ready", false);
    h.node_seeing(2, &[1], "ready", false);
    let mut delays = Vec::new();
    for _ in 0..7 {
        let (writes, action) = h.reconcile_action(json!({})).await;
        assert!(child_writes(&writes).is_empty(), "{writes:?}");
        delays.push(action);
    }
    let seconds = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(
        delays,
        [1, 2, 4, 8, 16, 30, 30].map(seconds),
        "1 s doubling while unsynced, bounded at 30 s"
    );
    assert_eq!(h.condition("Clustered").1, "PeersMissing");

    // The peers reconnected: Clustered comes back and the cluster is polled slowly again.
    h.node(1, 3, "ready", false);
    h.node(2, 3, "ready", false);
    let (writes, action) = h.reconcile_action(json!({})).await;
    assert_eq!(h.condition("Clustered").0, "True");
    assert_eq!(
        writes,
        [
            format!("PATCH {CLUSTER}/status"),
            "POST /apis/events.k8s.io/v1/namespaces/apps/events".to_owned()
        ]
    );
    assert_eq!(
        h.events().last(),
        Some(&("Normal".to_owned(), "AllPeersConnected".to_owned()))
    );
    assert_eq!(action, seconds(60));
    let (writes, action) = h.reconcile_action(json!({})).await;
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "a steady cluster costs no writes"
    );
    assert_eq!(action, seconds(60));

    // The next restart starts the backoff from 1 s again.
    h.node_seeing(1, &[2], "ready", false);
    assert_eq!(h.reconcile_action(json!({})).await.1, seconds(1));
}

#[tokio::test]
async fn a_node_still_loading_keeps_the_fast_polls() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 1})).await;
    h.run_pods(1);
    h.node(0, 1, "loading", false);
    let (_, action) = h.reconcile_action(json!({"replicas": 1})).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
}
