//! One small pure function per condition of `status.conditions`, each deciding its status,
//! reason and message from what was observed, and [`set_condition`], which stamps a value into
//! the list without moving `lastTransitionTime` when the status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sessionstore_api::constants::{condition, reason, CLOCK_SKEW_THRESHOLD_MS};
use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::{MemberStatus, SessionClusterStatus};

use super::members::percent;
use super::observed::Observed;

/// A condition's status, reason and message, before it gets a generation and a transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionValue {
    /// `True` or `False`.
    pub status: bool,
    /// One of the `reason` constants.
    pub reason: &'static str,
    /// For the user: what is going on and, for trouble, what to do.
    pub message: String,
}

fn value(status: bool, reason: &'static str, message: impl Into<String>) -> ConditionValue {
    ConditionValue {
        status,
        reason,
        message: message.into(),
    }
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

/// [`set_condition`] with a computed [`ConditionValue`].
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: ConditionValue,
    generation: Option<i64>,
    now: &Time,
) {
    set_condition(
        conditions,
        type_,
        value.status,
        value.reason,
        value.message,
        generation,
        now,
    );
}

/// Status value of condition `type_`, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// `Available`: all nodes or a quorum ready, or a scale-up that lost no ready node.
pub fn available(old: &SessionClusterStatus, observed: &Observed) -> ConditionValue {
    let desired = observed.desired;
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
    if observed.ready >= desired && desired > 0 {
        value(true, reason::ALL_NODES_READY, counts)
    } else if observed.ready >= quorum {
        value(true, reason::QUORUM_READY, counts)
    } else if no_ready_node_lost {
        value(
            true,
            reason::SCALING_UP,
            format!("{counts}; no ready node was lost, the new nodes are starting"),
        )
    } else {
        value(false, reason::QUORUM_LOST, counts)
    }
}

/// `Progressing`: a scale-down waiting for leaving nodes, removed pods shutting down, a
/// scale-up, a rollout, or nodes starting; `False` once everything matches the spec.
pub fn progressing(observed: &Observed) -> ConditionValue {
    let desired = observed.desired;
    if let Some(scale_down) = &observed.scale_down {
        value(
            true,
            reason::SCALING_DOWN,
            format!(
                "waiting for {} to leave before scaling to {}",
                scale_down.leaving.join(", "),
                scale_down.target_replicas
            ),
        )
    } else if observed.replicas > desired {
        // The StatefulSet was lowered; its removed pods are still shutting down (their
        // `updatedReplicas` does not count them, which is not a rollout).
        value(
            true,
            reason::SCALING_DOWN,
            format!(
                "{} removed nodes shutting down",
                observed.replicas - desired
            ),
        )
    } else if observed.replicas < desired {
        value(
            true,
            reason::SCALING_UP,
            format!("{} of {desired} nodes created", observed.replicas),
        )
    } else if observed.rolling || observed.updated < observed.replicas {
        value(
            true,
            reason::ROLLING_UPDATE,
            format!(
                "{} of {} nodes updated, one at a time after the previous one is synced",
                observed.updated, observed.replicas
            ),
        )
    } else if observed.ready < desired {
        value(
            true,
            reason::NODES_STARTING,
            format!("{} of {desired} nodes ready", observed.ready),
        )
    } else {
        value(
            false,
            reason::UP_TO_DATE,
            format!("{desired} nodes match the spec"),
        )
    }
}

/// `Degraded`: a refused change, a missing password Secret, nodes not ready while nothing is
/// in progress (`progressing` is the status of `Progressing`), or a node whose clock is off.
pub fn degraded(observed: &Observed, progressing: bool) -> ConditionValue {
    let skewed = clock_skewed(&observed.members);
    if let Some(refused) = &observed.refused {
        value(true, reason::CHANGE_REFUSED, refused.clone())
    } else if let Some(missing) = &observed.auth_missing {
        value(true, reason::AUTH_SECRET_MISSING, missing.clone())
    } else if !progressing && observed.ready < observed.desired {
        value(
            true,
            reason::NODES_NOT_READY,
            format!("{} of {} nodes ready", observed.ready, observed.desired),
        )
    } else if !skewed.is_empty() {
        let nodes: Vec<String> = skewed
            .iter()
            .map(|(name, skew_ms)| {
                let direction = if *skew_ms > 0 { "ahead of" } else { "behind" };
                format!(
                    "{name}'s clock is {:.1} s {direction} its peers'",
                    skew_ms.unsigned_abs() as f64 / 1000.0
                )
            })
            .collect();
        value(
            true,
            reason::CLOCK_SKEW,
            format!(
                "{}: it stamps writes by its peers' time meanwhile; fix the node's time synchronisation (NTP)",
                nodes.join("; ")
            ),
        )
    } else {
        value(false, reason::HEALTHY, "no problem found")
    }
}

/// The nodes whose clock most of the members that measured it see off by more than
/// [`CLOCK_SKEW_THRESHOLD_MS`], by name, with the median of what they measured (the node's
/// clock minus theirs). A majority, because a member with a wrong clock sees every other clock
/// off: only the node that most see off is the one to fix.
pub fn clock_skewed(members: &[NodeStatus]) -> Vec<(String, i64)> {
    let mut seen: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
    for member in members {
        for peer in &member.peers {
            if let Some(skew) = peer.clock_skew_ms {
                seen.entry(peer.name.as_str()).or_default().push(skew);
            }
        }
    }
    seen.into_iter()
        .filter_map(|(name, mut skews)| {
            let off = skews
                .iter()
                .filter(|skew| skew.unsigned_abs() > CLOCK_SKEW_THRESHOLD_MS)
                .count();
            if off * 2 <= skews.len() {
                return None;
            }
            skews.sort_unstable();
            Some((name.to_string(), skews[skews.len() / 2]))
        })
        .collect()
}

/// `Clustered`: every reporting member sees every other expected node. Two nodes that both
/// answer but do not see each other are a partition; a node nobody sees that has not answered
/// yet is a pod still starting (a scale-up, a restart).
pub fn clustered(members: &[MemberStatus]) -> ConditionValue {
    let missing: Vec<String> = members
        .iter()
        .filter(|m| !m.missing_peers.is_empty())
        .map(|m| format!("{} does not see {}", m.name, m.missing_peers.join(", ")))
        .collect();
    let partitioned = members.iter().any(|m| {
        m.missing_peers
            .iter()
            .any(|peer| members.iter().any(|other| other.name == *peer))
    });
    if members.is_empty() {
        value(
            false,
            reason::NO_MEMBERS,
            "no node has reported its status yet",
        )
    } else if missing.is_empty() {
        value(
            true,
            reason::ALL_PEERS_CONNECTED,
            format!("{} reporting nodes see every other node", members.len()),
        )
    } else if partitioned {
        value(false, reason::PEERS_MISSING, missing.join("; "))
    } else {
        value(
            false,
            reason::NODES_JOINING,
            format!(
                "{}: the missing nodes are not ready yet",
                missing.join("; ")
            ),
        )
    }
}

/// `MemoryPressure`: the members above their high watermark, with their use of the limit.
pub fn memory_pressure(members: &[MemberStatus]) -> ConditionValue {
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
        value(
            false,
            reason::MEMORY_OK,
            "every node is below its high watermark",
        )
    } else {
        value(
            true,
            reason::MEMORY_HIGH,
            format!(
                "{}: writes that grow memory are refused; raise resources.limits.memory or shorten session timeouts",
                pressured.join(", ")
            ),
        )
    }
}

/// `ReconcileSuccess` after the spec was applied.
pub fn reconciled() -> ConditionValue {
    value(true, reason::RECONCILED, "the spec is applied")
}

/// `ReconcileSuccess` for a spec that cannot be carried out.
pub fn invalid_spec_not_reconciled(message: &str) -> ConditionValue {
    value(false, reason::INVALID_SPEC, message)
}

/// `Degraded` for a spec that cannot be carried out.
pub fn invalid_spec_degraded(message: &str) -> ConditionValue {
    value(true, reason::INVALID_SPEC, message)
}

/// `ReconcileSuccess` after an API or network error the operator retries.
pub fn reconcile_failed(message: &str) -> ConditionValue {
    value(
        false,
        reason::RECONCILE_ERROR,
        format!("{message}; retrying with backoff"),
    )
}

/// `Paused` while `spec.paused` is true.
pub fn paused() -> ConditionValue {
    value(
        true,
        reason::PAUSED,
        "spec.paused is true: the operator changes nothing until it is false",
    )
}

/// `Paused` while the operator reconciles.
pub fn not_paused() -> ConditionValue {
    value(false, reason::NOT_PAUSED, "reconciling")
}

#[cfg(test)]
mod tests {
    use sessionstore_api::ScaleDownStatus;

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
    fn degraded_reports_a_refusal_before_a_missing_secret_and_idle_unready_nodes() {
        let both = Observed {
            refused: Some("no".into()),
            auth_missing: Some("gone".into()),
            ..at_rest(3, 3)
        };
        assert_eq!(
            degraded(&both, false),
            value(true, reason::CHANGE_REFUSED, "no")
        );
        assert_eq!(
            degraded(&at_rest(3, 2), false),
            value(true, reason::NODES_NOT_READY, "2 of 3 nodes ready")
        );
        assert_eq!(
            degraded(&at_rest(3, 2), true),
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
            degraded(&observed, false),
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
                false
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
        assert_eq!(degraded(&observed, false).reason, reason::NODES_NOT_READY);
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
            memory_pressure(&members),
            value(
                true,
                reason::MEMORY_HIGH,
                "demo-1 at 85% of its memory limit: writes that grow memory are refused; raise resources.limits.memory or shorten session timeouts"
            )
        );
        assert!(!memory_pressure(&members[..1]).status);
    }
}
