//! Tests of the condition rules: each condition's reason and message for the states it
//! tells apart.

use sessionstore_api::ScaleDownStatus;

use super::super::pods::PodProblem;
use super::*;

fn member(name: &str, missing: &[&str], alarm: bool) -> MemberStatus {
    MemberStatus {
        name: name.into(),
        state: "ready".into(),
        missing_peers: missing.iter().map(|p| (*p).to_owned()).collect(),
        memory_used_bytes: 85,
        memory_limit_bytes: 100,
        memory_alarm: alarm,
        ..MemberStatus::default()
    }
}

fn at_rest(desired: i32, ready: i32) -> Observed {
    Observed {
        name: "demo".into(),
        desired,
        statefulset_replicas: desired,
        replicas: desired,
        ready,
        updated: desired,
        ..Observed::default()
    }
}

#[test]
fn available_needs_a_quorum() {
    let old = SessionClusterStatus::default();
    assert_eq!(
        available(&old, &at_rest(5, 3)),
        value(true, reason::QUORUM_READY, "3 of 5 nodes ready (quorum 3)")
    );
    assert_eq!(available(&old, &at_rest(5, 2)).reason, reason::QUORUM_LOST);
    assert_eq!(
        available(&old, &at_rest(5, 5)).reason,
        reason::ALL_NODES_READY
    );
}

#[test]
fn progressing_names_what_is_under_way_first_the_scale_down() {
    let leaving = Observed {
        scale_down: Some(ScaleDownStatus {
            target_replicas: 2,
            leaving: vec!["demo-2".into(), "demo-3".into()],
            started_at: String::new(),
        }),
        ..at_rest(2, 2)
    };
    assert_eq!(
        progressing(&leaving),
        value(
            true,
            reason::SCALING_DOWN,
            "waiting for demo-2, demo-3 to leave before scaling to 2"
        )
    );
    let rolling = Observed {
        updated: 1,
        ..at_rest(3, 3)
    };
    assert_eq!(
        progressing(&rolling).message,
        "1 of 3 nodes updated, one at a time after the previous one is synced"
    );
    assert_eq!(
        progressing(&at_rest(3, 3)),
        value(false, reason::UP_TO_DATE, "3 nodes match the spec")
    );
}

#[test]
fn degraded_reports_stuck_pods_then_a_refusal_a_missing_secret_lost_sessions_and_idle_unready_nodes(
) {
    let stuck = |reason: &'static str, message: &str| PodProblem {
        reason,
        message: message.into(),
    };
    let everything = Observed {
        pod_problems: vec![
            stuck(reason::IMAGE_PULL_BACK_OFF, "pod demo-2 cannot pull"),
            stuck(reason::CRASH_LOOP_BACK_OFF, "pod demo-0 keeps crashing"),
        ],
        refused: Some("no".into()),
        auth_problem: Some((reason::AUTH_SECRET_MISSING, "gone".into())),
        ..at_rest(3, 3)
    };
    assert_eq!(
        degraded(&everything, false, Some("lost".into())),
        value(
            true,
            reason::IMAGE_PULL_BACK_OFF,
            "pod demo-2 cannot pull; pod demo-0 keeps crashing"
        )
    );
    let refused = Observed {
        pod_problems: Vec::new(),
        ..everything.clone()
    };
    assert_eq!(
        degraded(&refused, false, Some("lost".into())),
        value(true, reason::CHANGE_REFUSED, "no")
    );
    let secret = Observed {
        refused: None,
        ..refused
    };
    assert_eq!(
        degraded(&secret, false, None),
        value(true, reason::AUTH_SECRET_MISSING, "gone")
    );
    assert_eq!(
        degraded(&at_rest(3, 3), false, Some("lost".into())),
        value(true, reason::SESSIONS_LOST, "lost")
    );
    assert_eq!(
        degraded(&at_rest(3, 2), false, None),
        value(true, reason::NODES_NOT_READY, "2 of 3 nodes ready")
    );
    assert_eq!(
        degraded(&at_rest(1, 0), false, None).message,
        "0 of 1 node ready"
    );
    assert_eq!(
        degraded(&at_rest(3, 2), true, None),
        value(false, reason::HEALTHY, "no problem found")
    );
}

fn reporting(name: &str, skews: &[(&str, i64)]) -> NodeStatus {
    NodeStatus {
        node_name: name.into(),
        peers: skews
            .iter()
            .map(|(peer, skew)| sessionstore_api::node_status::PeerReport {
                name: (*peer).into(),
                connected: true,
                clock_skew_ms: Some(*skew),
                ..Default::default()
            })
            .collect(),
        ..NodeStatus::default()
    }
}

#[test]
fn degraded_names_the_node_whose_clock_most_peers_see_off() {
    // demo-0 a minute ahead: both others see it +60 s, it sees them -60 s.
    let members = vec![
        reporting("demo-0", &[("demo-1", -60_000), ("demo-2", -60_002)]),
        reporting("demo-1", &[("demo-0", 60_000), ("demo-2", -2)]),
        reporting("demo-2", &[("demo-0", 60_004), ("demo-1", 2)]),
    ];
    let observed = Observed {
        members,
        ..at_rest(3, 3)
    };
    assert_eq!(
        degraded(&observed, false, None),
        value(
            true,
            reason::CLOCK_SKEW,
            "demo-0's clock is 60.0 s ahead of its peers': it stamps writes by its peers' time meanwhile; fix the node's time synchronisation (NTP)"
        )
    );
    // A minute behind, and a skew within the threshold is nothing.
    let behind = vec![
        reporting("demo-1", &[("demo-0", -61_500), ("demo-2", 400)]),
        reporting("demo-2", &[("demo-0", -61_500), ("demo-1", -400)]),
    ];
    assert_eq!(clock_skewed(&behind), vec![("demo-0".to_string(), -61_500)]);
    let fine = vec![reporting("demo-1", &[("demo-0", 499)])];
    assert!(clock_skewed(&fine).is_empty());
    assert_eq!(
        degraded(
            &Observed {
                members: fine,
                ..at_rest(3, 3)
            },
            false,
            None
        )
        .reason,
        reason::HEALTHY
    );
    // Two nodes: each sees the other off, and both are named.
    let two = vec![
        reporting("demo-0", &[("demo-1", -60_000)]),
        reporting("demo-1", &[("demo-0", 60_000)]),
    ];
    assert_eq!(
        clock_skewed(&two),
        vec![
            ("demo-0".to_string(), 60_000),
            ("demo-1".to_string(), -60_000)
        ]
    );
    // Idle unready nodes come first.
    let observed = Observed {
        members: two,
        ..at_rest(3, 2)
    };
    assert_eq!(
        degraded(&observed, false, None).reason,
        reason::NODES_NOT_READY
    );
}

#[test]
fn counts_of_one_are_singular() {
    assert_eq!(plural(1, "node"), "1 node");
    assert_eq!(plural(0, "node"), "0 nodes");
    assert_eq!(
        available(&SessionClusterStatus::default(), &at_rest(1, 1)).message,
        "1 of 1 node ready (quorum 1)"
    );
    assert_eq!(
        progressing(&at_rest(1, 1)).message,
        "1 node matches the spec"
    );
    assert_eq!(
        clustered(&[member("demo-0", &[], false)]).message,
        "1 reporting node sees every other node"
    );
    let shrinking = Observed {
        replicas: 2,
        ..at_rest(1, 1)
    };
    assert_eq!(
        progressing(&shrinking).message,
        "1 removed node shutting down"
    );
}

#[test]
fn a_rollout_without_progress_past_the_deadline_is_reported() {
    let at = |seconds: i64| {
        Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
                + k8s_openapi::jiff::SignedDuration::from_secs(seconds),
        )
    };
    let stuck = Observed {
        generation: Some(2),
        updated: 2,
        progress_deadline_seconds: 60,
        ..at_rest(3, 2)
    };
    let start = SessionClusterStatus {
        observed_generation: Some(1),
        ..SessionClusterStatus::default()
    };
    let (value_then, since) = with_deadline(&start, &stuck, progressing(&stuck), &at(0));
    assert!(value_then.status);
    assert_eq!(since.as_deref(), Some("1970-01-01T00:00:00Z"));
    let mut old = SessionClusterStatus {
        observed_generation: Some(2),
        replicas: stuck.replicas,
        ready_replicas: stuck.ready,
        updated_replicas: stuck.updated,
        last_progress_time: since,
        ..SessionClusterStatus::default()
    };
    set(
        &mut old.conditions,
        condition::PROGRESSING,
        value_then,
        Some(2),
        &at(0),
    );
    let (within, _) = with_deadline(&old, &stuck, progressing(&stuck), &at(60));
    assert!(within.status, "at the deadline, not past it");
    let (past, since) = with_deadline(&old, &stuck, progressing(&stuck), &at(61));
    assert_eq!(
        past,
        value(
            false,
            reason::PROGRESS_DEADLINE_EXCEEDED,
            "no progress for more than 60s (spec.progressDeadlineSeconds): 2 of 3 nodes updated, one at a time after the previous one is synced; Degraded names what is stuck"
        )
    );
    // Still stuck later: still exceeded. A node updated: progress again.
    set(
        &mut old.conditions,
        condition::PROGRESSING,
        past,
        Some(2),
        &at(61),
    );
    old.last_progress_time = since;
    assert!(
        !with_deadline(&old, &stuck, progressing(&stuck), &at(500))
            .0
            .status
    );
    let moved = Observed {
        updated: 3,
        ..stuck.clone()
    };
    let (again, since) = with_deadline(&old, &moved, progressing(&moved), &at(500));
    assert!(again.status);
    assert_eq!(since.as_deref(), Some("1970-01-01T00:08:20Z"));
}

#[test]
fn clustered_tells_a_partition_from_nodes_joining() {
    assert_eq!(clustered(&[]).reason, reason::NO_MEMBERS);
    let joining = [member("demo-0", &["demo-1"], false)];
    assert_eq!(
        clustered(&joining),
        value(
            false,
            reason::NODES_JOINING,
            "demo-0 does not see demo-1: the missing nodes are not ready yet"
        )
    );
    let partition = [
        member("demo-0", &["demo-1"], false),
        member("demo-1", &[], false),
    ];
    assert_eq!(
        clustered(&partition),
        value(false, reason::PEERS_MISSING, "demo-0 does not see demo-1")
    );
}

#[test]
fn memory_pressure_lists_the_alarmed_members() {
    let members = [member("demo-0", &[], false), member("demo-1", &[], true)];
    assert_eq!(
        memory_pressure(&members, None),
        value(
            true,
            reason::MEMORY_HIGH,
            "demo-1 at 85% of its memory limit: writes that grow memory are refused; raise resources.limits.memory or shorten session timeouts"
        )
    );
    assert!(!memory_pressure(&members[..1], None).status);
    assert_eq!(
        memory_pressure(&members[..1], Some("little room")).message,
        "every node is below its high watermark; warning: little room"
    );
}
