//! Computes the SessionCluster status from what was observed: the StatefulSet's counts, the
//! members' `/v1/status`, a scale-down in progress, a refused change. Pure: the controller
//! writes the result only when it differs from the current status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sessionstore_api::constants::{condition, reason};
use sessionstore_api::{MemberStatus, ScaleDownStatus, SessionClusterStatus};

use crate::naming;
use crate::node_client::NodeStatus;

/// What the controller saw during one reconcile.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// SessionCluster name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub desired: i32,
    /// The StatefulSet's `spec.replicas` as applied (above `desired` during a scale-down).
    pub statefulset_replicas: i32,
    /// StatefulSet `status.replicas`.
    pub replicas: i32,
    /// StatefulSet `status.readyReplicas`.
    pub ready: i32,
    /// StatefulSet `status.updatedReplicas`.
    pub updated: i32,
    /// StatefulSet current revision differs from its update revision.
    pub rolling: bool,
    /// Each polled node, by pod name.
    pub members: Vec<NodeStatus>,
    /// A scale-down waiting for leaving nodes.
    pub scale_down: Option<ScaleDownStatus>,
    /// A change of the spec that cannot be carried out, explained.
    pub refused: Option<String>,
    /// The password Secret the pods mount is missing, explained.
    pub auth_missing: Option<String>,
}

/// Sets condition `type_` in `conditions`, keeping `lastTransitionTime` when the status is
/// unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(index) => conditions[index] = condition,
        None => conditions.push(condition),
    }
}

/// Status value of condition `type_`, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Pods of `members` that do not see some expected peer, with the peers they miss.
pub fn missing_peers(name: &str, expected: &[String], member: &NodeStatus) -> Vec<String> {
    let _ = name;
    expected
        .iter()
        .filter(|pod| **pod != member.node_name)
        .filter(|pod| {
            !member
                .peers
                .iter()
                .any(|peer| peer.connected && &peer.name == *pod)
        })
        .cloned()
        .collect()
}

fn percent(used: u64, limit: u64) -> Option<u64> {
    (limit > 0).then(|| (used.saturating_mul(100)) / limit)
}

/// The status for a valid, unpaused cluster.
pub fn compute(
    old: &SessionClusterStatus,
    observed: &Observed,
    now: &Time,
) -> SessionClusterStatus {
    let generation = observed.generation;
    let desired = observed.desired;
    let expected: Vec<String> = (0..desired)
        .map(|i| naming::pod(&observed.name, i))
        .collect();
    let mut conditions = old.conditions.clone();

    let quorum = desired / 2 + 1;
    let counts = format!(
        "{} of {desired} nodes ready (quorum {quorum})",
        observed.ready
    );
    // Below the quorum of the new size right after a scale-up is not a loss: the new pods are
    // still starting. Only fewer ready nodes than before is.
    let no_ready_node_lost = condition_status(&old.conditions, condition::AVAILABLE)
        == Some("True")
        && observed.ready > 0
        && observed.ready >= old.ready_replicas;
    let (available, available_reason, available_message) =
        if observed.ready >= desired && desired > 0 {
            (true, reason::ALL_NODES_READY, counts)
        } else if observed.ready >= quorum {
            (true, reason::QUORUM_READY, counts)
        } else if no_ready_node_lost {
            (
                true,
                reason::SCALING_UP,
                format!("{counts}; no ready node was lost, the new nodes are starting"),
            )
        } else {
            (false, reason::QUORUM_LOST, counts)
        };
    set_condition(
        &mut conditions,
        condition::AVAILABLE,
        available,
        available_reason,
        available_message,
        generation,
        now,
    );

    let progressing = if let Some(scale_down) = &observed.scale_down {
        Some((
            reason::SCALING_DOWN,
            format!(
                "waiting for {} to leave before scaling to {}",
                scale_down.leaving.join(", "),
                scale_down.target_replicas
            ),
        ))
    } else if observed.replicas > desired {
        // The StatefulSet was lowered; its removed pods are still shutting down (their
        // `updatedReplicas` no longer counts them, which is not a rollout).
        Some((
            reason::SCALING_DOWN,
            format!(
                "{} removed nodes shutting down",
                observed.replicas - desired
            ),
        ))
    } else if observed.replicas < desired {
        Some((
            reason::SCALING_UP,
            format!("{} of {desired} nodes created", observed.replicas),
        ))
    } else if observed.rolling || observed.updated < observed.replicas {
        Some((
            reason::ROLLING_UPDATE,
            format!(
                "{} of {} nodes updated, one at a time after the previous one is synced",
                observed.updated, observed.replicas
            ),
        ))
    } else if observed.ready < desired {
        Some((
            reason::NODES_STARTING,
            format!("{} of {desired} nodes ready", observed.ready),
        ))
    } else {
        None
    };
    match &progressing {
        Some((why, message)) => set_condition(
            &mut conditions,
            condition::PROGRESSING,
            true,
            why,
            message.clone(),
            generation,
            now,
        ),
        None => set_condition(
            &mut conditions,
            condition::PROGRESSING,
            false,
            reason::UP_TO_DATE,
            format!("{desired} nodes match the spec"),
            generation,
            now,
        ),
    }

    let (degraded, degraded_reason, degraded_message) = if let Some(refused) = &observed.refused {
        (true, reason::CHANGE_REFUSED, refused.clone())
    } else if let Some(missing) = &observed.auth_missing {
        (true, reason::AUTH_SECRET_MISSING, missing.clone())
    } else if progressing.is_none() && observed.ready < desired {
        (
            true,
            reason::NODES_NOT_READY,
            format!("{} of {desired} nodes ready", observed.ready),
        )
    } else {
        (false, reason::HEALTHY, "no problem found".to_owned())
    };
    set_condition(
        &mut conditions,
        condition::DEGRADED,
        degraded,
        degraded_reason,
        degraded_message,
        generation,
        now,
    );

    let mut members: Vec<MemberStatus> = observed
        .members
        .iter()
        .map(|node| MemberStatus {
            name: node.node_name.clone(),
            state: node.state.clone(),
            keys: node.keys,
            peers: node
                .peers
                .iter()
                .filter(|p| p.connected)
                .map(|p| p.name.clone())
                .collect(),
            missing_peers: missing_peers(&observed.name, &expected, node),
            max_lag_ops: node.peers.iter().map(|p| p.lag_ops).max().unwrap_or(0),
            memory_used_bytes: node.memory.used_bytes,
            memory_limit_bytes: node.memory.limit_bytes,
            memory_alarm: node.memory.alarm,
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));

    let missing: Vec<String> = members
        .iter()
        .filter(|m| !m.missing_peers.is_empty())
        .map(|m| format!("{} does not see {}", m.name, m.missing_peers.join(", ")))
        .collect();
    // Two nodes that both answer but do not see each other are a partition; a node nobody sees
    // that has not answered yet is a pod still starting (a scale-up, a restart).
    let partitioned = members.iter().any(|m| {
        m.missing_peers
            .iter()
            .any(|peer| members.iter().any(|other| other.name == *peer))
    });
    if members.is_empty() {
        set_condition(
            &mut conditions,
            condition::CLUSTERED,
            false,
            reason::NO_MEMBERS,
            "no node has reported its status yet".to_owned(),
            generation,
            now,
        );
    } else if missing.is_empty() {
        set_condition(
            &mut conditions,
            condition::CLUSTERED,
            true,
            reason::ALL_PEERS_CONNECTED,
            format!("{} reporting nodes see every other node", members.len()),
            generation,
            now,
        );
    } else if partitioned {
        set_condition(
            &mut conditions,
            condition::CLUSTERED,
            false,
            reason::PEERS_MISSING,
            missing.join("; "),
            generation,
            now,
        );
    } else {
        set_condition(
            &mut conditions,
            condition::CLUSTERED,
            false,
            reason::NODES_JOINING,
            format!(
                "{}: the missing nodes are not ready yet",
                missing.join("; ")
            ),
            generation,
            now,
        );
    }

    let pressured: Vec<String> = members
        .iter()
        .filter(|m| m.memory_alarm)
        .map(
            |m| match percent(m.memory_used_bytes, m.memory_limit_bytes) {
                Some(p) => format!("{} at {p}% of its memory limit", m.name),
                None => m.name.clone(),
            },
        )
        .collect();
    if pressured.is_empty() {
        set_condition(
            &mut conditions,
            condition::MEMORY_PRESSURE,
            false,
            reason::MEMORY_OK,
            "every node is below its high watermark".to_owned(),
            generation,
            now,
        );
    } else {
        set_condition(
            &mut conditions,
            condition::MEMORY_PRESSURE,
            true,
            reason::MEMORY_HIGH,
            format!(
                "{}: writes that grow memory are refused; raise resources.limits.memory or shorten session timeouts",
                pressured.join(", ")
            ),
            generation,
            now,
        );
    }

    set_condition(
        &mut conditions,
        condition::RECONCILE_SUCCESS,
        true,
        reason::RECONCILED,
        "the spec is applied".to_owned(),
        generation,
        now,
    );
    set_condition(
        &mut conditions,
        condition::PAUSED,
        false,
        reason::NOT_PAUSED,
        "reconciling".to_owned(),
        generation,
        now,
    );

    let memory = members
        .iter()
        .filter_map(|m| percent(m.memory_used_bytes, m.memory_limit_bytes))
        .max()
        .map(|p| format!("{p}%"));

    SessionClusterStatus {
        observed_generation: generation,
        replicas: observed.replicas,
        ready_replicas: observed.ready,
        updated_replicas: observed.updated,
        ready: Some(format!("{}/{desired}", observed.ready)),
        memory,
        selector: Some(naming::selector_string(&observed.name)),
        members,
        scale_down: observed.scale_down.clone(),
        conditions,
    }
}

/// The status for a spec that cannot be carried out: everything else is kept as it was.
pub fn invalid(
    old: &SessionClusterStatus,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> SessionClusterStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        condition::RECONCILE_SUCCESS,
        false,
        reason::INVALID_SPEC,
        message.to_owned(),
        generation,
        now,
    );
    set_condition(
        &mut status.conditions,
        condition::DEGRADED,
        true,
        reason::INVALID_SPEC,
        message.to_owned(),
        generation,
        now,
    );
    status
}

/// The status while `spec.paused` is true: only the Paused condition changes.
pub fn paused(
    old: &SessionClusterStatus,
    generation: Option<i64>,
    now: &Time,
) -> SessionClusterStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        condition::PAUSED,
        true,
        reason::PAUSED,
        "spec.paused is true: the operator changes nothing until it is false".to_owned(),
        generation,
        now,
    );
    status
}

/// The status after a failed reconcile (an API or network error the operator retries).
pub fn failed(
    old: &SessionClusterStatus,
    generation: Option<i64>,
    message: &str,
    now: &Time,
) -> SessionClusterStatus {
    let mut status = old.clone();
    set_condition(
        &mut status.conditions,
        condition::RECONCILE_SUCCESS,
        false,
        reason::RECONCILE_ERROR,
        format!("{message}; retrying with backoff"),
        generation,
        now,
    );
    status
}

/// Whether every node the spec asks for reported its status, is `ready` and sees every other
/// node. Until then the controller polls again soon: a restarted pod is ready within seconds,
/// and its peers reconnect to it a few seconds later.
pub fn members_synced(status: &SessionClusterStatus, desired: i32) -> bool {
    usize::try_from(desired).is_ok_and(|desired| status.members.len() == desired)
        && status
            .members
            .iter()
            .all(|m| m.state == "ready" && m.missing_peers.is_empty())
}

/// Whether a condition in this state means trouble (a Warning event on the way in). Nodes still
/// joining after a scale-up or a restart are not.
pub fn is_trouble(condition: &Condition) -> bool {
    let trouble = matches!(
        (condition.type_.as_str(), condition.status.as_str()),
        (condition::AVAILABLE, "False")
            | (condition::DEGRADED, "True")
            | (condition::CLUSTERED, "False")
            | (condition::MEMORY_PRESSURE, "True")
            | (condition::RECONCILE_SUCCESS, "False")
    );
    trouble && condition.reason != reason::NODES_JOINING
}

/// A condition that changed status between `old` and `new`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new condition.
    pub condition: Condition,
    /// True when it moves into trouble (Warning), false for progress (Normal).
    pub warning: bool,
}

/// Conditions whose status changed, or that turned into trouble without changing status (nodes
/// joining, then a partition), worth an event. A condition that appears for the first time is
/// only reported when it is trouble other than "not yet available" (expected at start) or no
/// members reporting yet.
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    new.iter()
        .filter_map(|condition| {
            let previous = old.iter().find(|c| c.type_ == condition.type_);
            let trouble = is_trouble(condition);
            match previous {
                Some(previous)
                    if previous.status == condition.status
                        && (is_trouble(previous) || !trouble) =>
                {
                    None
                }
                Some(_) => Some(Transition {
                    condition: condition.clone(),
                    warning: trouble,
                }),
                None if trouble
                    && condition.type_ != condition::AVAILABLE
                    && condition.reason != reason::NO_MEMBERS =>
                {
                    Some(Transition {
                        condition: condition.clone(),
                        warning: true,
                    })
                }
                None if condition.type_ == condition::PAUSED && condition.status == "True" => {
                    Some(Transition {
                        condition: condition.clone(),
                        warning: false,
                    })
                }
                None => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_client::{NodeMemory, NodePeer};

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn node(name: &str, peers: &[&str], alarm: bool) -> NodeStatus {
        NodeStatus {
            node_name: name.into(),
            state: "ready".into(),
            keys: 1,
            memory: NodeMemory {
                used_bytes: if alarm { 90 } else { 10 },
                limit_bytes: 100,
                alarm,
            },
            peers: peers
                .iter()
                .map(|p| NodePeer {
                    name: (*p).into(),
                    connected: true,
                    lag_ops: 0,
                })
                .collect(),
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
        assert_eq!(progressing.message, "1 removed nodes shutting down");
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
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
                + k8s_openapi::jiff::SignedDuration::from_secs(60),
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
}
