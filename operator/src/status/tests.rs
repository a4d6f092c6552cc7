//! The status computed across successive observations of one cluster: the conditions a user
//! sees as nodes start, scale, restart, partition and fill up, and the events they produce.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sessionstore_api::node_status::{MemoryReport, NodeStatus, PeerReport};
use sessionstore_api::SessionClusterStatus;

use super::{compute, members_synced, transitions, Observed};

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

fn node(name: &str, peers: &[&str], alarm: bool) -> NodeStatus {
    NodeStatus {
        node_name: name.into(),
        state: "ready".into(),
        keys: 1,
        memory: MemoryReport {
            used_bytes: if alarm { 90 } else { 10 },
            limit_bytes: 100,
            alarm,
            ..MemoryReport::default()
        },
        peers: peers
            .iter()
            .map(|p| PeerReport {
                name: (*p).into(),
                connected: true,
                lag_ops: 0,
                ..PeerReport::default()
            })
            .collect(),
        ..NodeStatus::default()
    }
}
fn steady(members: Vec<NodeStatus>) -> Observed {
    Observed {
        name: "demo".into(),
        generation: Some(2),
        desired: 3,
        statefulset_replicas: 3,
        replicas: 3,
        ready: 3,
        updated: 3,
        members,
        ..Observed::default()
    }
}

fn get<'a>(status: &'a SessionClusterStatus, type_: &str) -> &'a Condition {
    match status.conditions.iter().find(|c| c.type_ == type_) {
        Some(c) => c,
        None => panic!("no condition {type_}"),
    }
}

#[test]
fn healthy_cluster() {
    let members = vec![
        node("demo-0", &["demo-1", "demo-2"], false),
        node("demo-1", &["demo-0", "demo-2"], false),
        node("demo-2", &["demo-0", "demo-1"], false),
    ];
    let status = compute(&SessionClusterStatus::default(), &steady(members), &now());
    assert_eq!(get(&status, "Available").status, "True");
    assert_eq!(get(&status, "Progressing").status, "False");
    assert_eq!(get(&status, "Degraded").status, "False");
    assert_eq!(get(&status, "Clustered").status, "True");
    assert_eq!(get(&status, "MemoryPressure").status, "False");
    assert_eq!(get(&status, "ReconcileSuccess").status, "True");
    assert_eq!(get(&status, "Paused").status, "False");
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    assert_eq!(status.memory.as_deref(), Some("10%"));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=demo,app.kubernetes.io/name=store-node")
    );
    assert_eq!(status.conditions.len(), 7);
}

#[test]
fn a_scale_up_is_not_a_quorum_loss_but_losing_a_ready_node_is() {
    let one = Observed {
        desired: 1,
        statefulset_replicas: 1,
        replicas: 1,
        ready: 1,
        updated: 1,
        ..steady(vec![node("demo-0", &[], false)])
    };
    let before = compute(&SessionClusterStatus::default(), &one, &now());
    assert_eq!(get(&before, "Available").status, "True");

    // `replicas: 3` applied; the two new pods exist but are still starting.
    let scaling = Observed {
        desired: 3,
        statefulset_replicas: 3,
        replicas: 3,
        updated: 3,
        ..one.clone()
    };
    let during = compute(&before, &scaling, &now());
    let available = get(&during, "Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("True", "ScalingUp")
    );
    assert_eq!(
        available.message,
        "1 of 3 nodes ready (quorum 2); no ready node was lost, the new nodes are starting"
    );
    assert!(
        transitions(&before.conditions, &during.conditions)
            .iter()
            .all(|t| !t.warning),
        "no Warning event on a scale-up"
    );
    // Still starting on the next poll: still no loss.
    assert_eq!(
        get(&compute(&during, &scaling, &now()), "Available").status,
        "True"
    );

    // The one ready node goes away: that is a real loss.
    let lost = Observed {
        ready: 0,
        members: vec![],
        ..scaling
    };
    let after = compute(&during, &lost, &now());
    let available = get(&after, "Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("False", "QuorumLost")
    );
    let events = transitions(&during.conditions, &after.conditions);
    assert!(events
        .iter()
        .any(|t| t.warning && t.condition.reason == "QuorumLost"));
}

#[test]
fn a_steady_cluster_losing_two_of_three_nodes_loses_its_quorum() {
    let all = steady(vec![node("demo-0", &["demo-1", "demo-2"], false)]);
    let healthy = compute(&SessionClusterStatus::default(), &all, &now());
    let one_left = Observed {
        ready: 1,
        ..all.clone()
    };
    let status = compute(&healthy, &one_left, &now());
    assert_eq!(get(&status, "Available").reason, "QuorumLost");
    assert_eq!(
        get(&status, "Available").message,
        "1 of 3 nodes ready (quorum 2)"
    );
}

#[test]
fn members_are_synced_when_every_node_reports_ready_and_sees_the_others() {
    let all = vec![
        node("demo-0", &["demo-1", "demo-2"], false),
        node("demo-1", &["demo-0", "demo-2"], false),
        node("demo-2", &["demo-0", "demo-1"], false),
    ];
    let status = compute(
        &SessionClusterStatus::default(),
        &steady(all.clone()),
        &now(),
    );
    assert!(members_synced(&status, 3));
    // A restarted node its peers have not reconnected to yet.
    let mut reconnecting = all.clone();
    reconnecting[1].peers.retain(|p| p.name != "demo-0");
    let status = compute(
        &SessionClusterStatus::default(),
        &steady(reconnecting),
        &now(),
    );
    assert!(!members_synced(&status, 3));
    // A node still loading, and a node that did not answer.
    let mut loading = all.clone();
    loading[2].state = "loading".into();
    let status = compute(&SessionClusterStatus::default(), &steady(loading), &now());
    assert!(!members_synced(&status, 3));
    let status = compute(
        &SessionClusterStatus::default(),
        &steady(all[..2].to_vec()),
        &now(),
    );
    assert!(!members_synced(&status, 3));
}

#[test]
fn pods_removed_by_a_scale_down_are_not_a_rollout() {
    // What a real StatefulSet reports right after it was lowered from 2 to 1: the removed pod
    // still counts in `replicas` but no longer in `updatedReplicas`.
    let observed = Observed {
        desired: 1,
        statefulset_replicas: 1,
        replicas: 2,
        ready: 2,
        updated: 1,
        ..steady(vec![node("demo-0", &[], false)])
    };
    let status = compute(&SessionClusterStatus::default(), &observed, &now());
    let progressing = get(&status, "Progressing");
    assert_eq!(progressing.reason, "ScalingDown");
    assert_eq!(progressing.message, "1 removed node shutting down");
}

#[test]
fn missing_peers_are_named() {
    let members = vec![
        node("demo-0", &["demo-1"], false),
        node("demo-1", &["demo-0"], false),
        node("demo-2", &[], false),
    ];
    let status = compute(&SessionClusterStatus::default(), &steady(members), &now());
    let clustered = get(&status, "Clustered");
    assert_eq!(clustered.status, "False");
    assert_eq!(clustered.reason, "PeersMissing");
    assert_eq!(
        clustered.message,
        "demo-0 does not see demo-2; demo-1 does not see demo-2; demo-2 does not see demo-0, demo-1"
    );
}

#[test]
fn nodes_still_joining_are_no_warning_but_a_partition_then_is() {
    let all = steady(vec![
        node("demo-0", &["demo-1", "demo-2"], false),
        node("demo-1", &["demo-0", "demo-2"], false),
        node("demo-2", &["demo-0", "demo-1"], false),
    ]);
    let healthy = compute(&SessionClusterStatus::default(), &all, &now());
    // demo-1 and demo-2 restart: not ready, not reporting, not seen.
    let joining = compute(&healthy, &steady(vec![node("demo-0", &[], false)]), &now());
    let clustered = get(&joining, "Clustered");
    assert_eq!(
        (clustered.status.as_str(), clustered.reason.as_str()),
        ("False", "NodesJoining")
    );
    assert_eq!(
        clustered.message,
        "demo-0 does not see demo-1, demo-2: the missing nodes are not ready yet"
    );
    let events = transitions(&healthy.conditions, &joining.conditions);
    assert_eq!(events.len(), 1);
    assert!(!events[0].warning);

    // demo-1 is back and reporting, but does not see demo-0: a partition.
    let partition = compute(
        &joining,
        &steady(vec![
            node("demo-0", &["demo-1"], false),
            node("demo-1", &[], false),
        ]),
        &now(),
    );
    assert_eq!(get(&partition, "Clustered").reason, "PeersMissing");
    let events = transitions(&joining.conditions, &partition.conditions);
    assert_eq!(events.len(), 1);
    assert!(events[0].warning, "trouble without a status change");
    assert_eq!(
        transitions(&partition.conditions, &partition.conditions),
        Vec::new()
    );
}

#[test]
fn memory_pressure_names_nodes() {
    let members = vec![
        node("demo-0", &["demo-1", "demo-2"], true),
        node("demo-1", &["demo-0", "demo-2"], false),
        node("demo-2", &["demo-0", "demo-1"], false),
    ];
    let status = compute(&SessionClusterStatus::default(), &steady(members), &now());
    let pressure = get(&status, "MemoryPressure");
    assert_eq!(pressure.status, "True");
    assert!(pressure
        .message
        .starts_with("demo-0 at 90% of its memory limit"));
    assert_eq!(status.memory.as_deref(), Some("90%"));
}

#[test]
fn unchanged_status_keeps_transition_times_so_equal_means_no_write() {
    let members = vec![node("demo-0", &["demo-1", "demo-2"], false)];
    let first = compute(
        &SessionClusterStatus::default(),
        &steady(members.clone()),
        &now(),
    );
    let later = Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH + k8s_openapi::jiff::SignedDuration::from_secs(60),
    );
    let second = compute(&first, &steady(members), &later);
    assert_eq!(first, second);
}

#[test]
fn transitions_warn_into_trouble_and_note_recovery() {
    let healthy = compute(
        &SessionClusterStatus::default(),
        &steady(vec![node("demo-0", &["demo-1", "demo-2"], false)]),
        &now(),
    );
    let pressured = compute(
        &healthy,
        &steady(vec![node("demo-0", &["demo-1", "demo-2"], true)]),
        &now(),
    );
    let events = transitions(&healthy.conditions, &pressured.conditions);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].condition.type_, "MemoryPressure");
    assert!(events[0].warning);
    let back = transitions(&pressured.conditions, &healthy.conditions);
    assert_eq!(back.len(), 1);
    assert!(!back[0].warning);
}
