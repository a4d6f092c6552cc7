//! One small pure function per condition of `status.conditions`, each deciding its status,
//! reason and message from what was observed, and [`set_condition`], which stamps a value into
//! the list without moving `lastTransitionTime` when the status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sessionstore_api::constants::{condition, reason, CLOCK_SKEW_THRESHOLD_MS};
use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::{MemberStatus, SessionClusterStatus};

use super::members::percent;
use super::observed::Observed;

/// `count` and `noun`, in the plural unless the count is one: "1 node", "3 nodes".
pub fn plural(count: impl Into<i64>, noun: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// "`part` of `whole` nodes", the noun agreeing with `whole`: "1 of 1 node", "2 of 3 nodes".
fn of_nodes(part: i32, whole: i32) -> String {
    format!("{part} of {}", plural(whole, "node"))
}

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
        "{} ready (quorum {quorum})",
        of_nodes(observed.ready, desired)
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
                "{} shutting down",
                plural(observed.replicas - desired, "removed node")
            ),
        )
    } else if observed.replicas < desired {
        value(
            true,
            reason::SCALING_UP,
            format!("{} created", of_nodes(observed.replicas, desired)),
        )
    } else if observed.rolling || observed.updated < desired {
        value(
            true,
            reason::ROLLING_UPDATE,
            format!(
                "{} updated, one at a time after the previous one is synced",
                of_nodes(observed.updated, desired)
            ),
        )
    } else if observed.ready < desired {
        value(
            true,
            reason::NODES_STARTING,
            format!("{} ready", of_nodes(observed.ready, desired)),
        )
    } else {
        value(
            false,
            reason::UP_TO_DATE,
            format!(
                "{} the spec",
                if desired == 1 {
                    "1 node matches".to_owned()
                } else {
                    format!("{desired} nodes match")
                }
            ),
        )
    }
}

/// `Progressing` held against `spec.progressDeadlineSeconds`, and the new
/// `status.lastProgressTime`. Progress is a change in the pod counts, a new spec generation or
/// the start of a rollout; with none for longer than the deadline, `Progressing` turns `False`
/// with `ProgressDeadlineExceeded`, as a Deployment's does, and stays so until something moves.
pub fn with_deadline(
    old: &SessionClusterStatus,
    observed: &Observed,
    progressing: ConditionValue,
    now: &Time,
) -> (ConditionValue, Option<String>) {
    if !progressing.status {
        return (progressing, None);
    }
    let previous = old
        .conditions
        .iter()
        .find(|c| c.type_ == condition::PROGRESSING);
    let was_under_way = previous
        .is_some_and(|c| c.status == "True" || c.reason == reason::PROGRESS_DEADLINE_EXCEEDED);
    let moved = old.replicas != observed.replicas
        || old.ready_replicas != observed.ready
        || old.updated_replicas != observed.updated
        || old.observed_generation != observed.generation;
    let since = match &old.last_progress_time {
        Some(since) if was_under_way && !moved => since.clone(),
        _ => now.0.to_string(),
    };
    let stalled_for = since
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|since| now.0.as_second() - since.as_second())
        .unwrap_or(0);
    let deadline = observed.progress_deadline_seconds;
    if deadline > 0 && stalled_for > deadline {
        let exceeded = value(
            false,
            reason::PROGRESS_DEADLINE_EXCEEDED,
            format!(
                "no progress for more than {deadline}s (spec.progressDeadlineSeconds): {}; Degraded names what is stuck",
                progressing.message
            ),
        );
        return (exceeded, Some(since));
    }
    (progressing, Some(since))
}

/// `Degraded`: stuck pods, a refused change, a missing or unusable password Secret, sessions
/// lost in a full restart (`sessions_lost`, while recent), nodes not ready while nothing is in
/// progress (`progressing` is the status of `Progressing`), or a node whose clock is off, in
/// that order.
pub fn degraded(
    observed: &Observed,
    progressing: bool,
    sessions_lost: Option<String>,
) -> ConditionValue {
    let skewed = clock_skewed(&observed.members);
    if let Some(worst) = observed.pod_problems.first() {
        let message = observed
            .pod_problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        value(true, worst.reason, message)
    } else if let Some(refused) = &observed.refused {
        value(true, reason::CHANGE_REFUSED, refused.clone())
    } else if let Some((reason, message)) = &observed.auth_problem {
        value(true, reason, message.clone())
    } else if let Some(lost) = sessions_lost {
        value(true, reason::SESSIONS_LOST, lost)
    } else if !progressing && observed.ready < observed.desired {
        value(
            true,
            reason::NODES_NOT_READY,
            format!("{} ready", of_nodes(observed.ready, observed.desired)),
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
            if members.len() == 1 {
                "1 reporting node sees every other node".to_owned()
            } else {
                format!("{} reporting nodes see every other node", members.len())
            },
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

/// `MemoryPressure`: the members above their high watermark, with their use of the limit, and
/// the warning of a limit that leaves too little room above the high watermark.
pub fn memory_pressure(members: &[MemberStatus], headroom_warning: Option<&str>) -> ConditionValue {
    let mut pressure = memory_alarms(members);
    if let Some(warning) = headroom_warning {
        pressure.message = format!("{}; warning: {warning}", pressure.message);
    }
    pressure
}

fn memory_alarms(members: &[MemberStatus]) -> ConditionValue {
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

/// `ReconcileSuccess` after the spec was applied, but for the part a refusal explains.
pub fn reconciled(refused: Option<&str>) -> ConditionValue {
    match refused {
        Some(refused) => value(
            false,
            reason::CHANGE_REFUSED,
            format!("part of the spec is not applied: {refused}"),
        ),
        None => value(true, reason::RECONCILED, "the spec is applied"),
    }
}

/// `ReconcileSuccess` while `spec.paused` is true: generation `generation` is not applied,
/// the cluster runs `applied`.
pub fn paused_not_applied(generation: Option<i64>, applied: Option<i64>) -> ConditionValue {
    let wanted = generation.map_or_else(
        || "the spec".to_owned(),
        |g| format!("generation {g} of the spec"),
    );
    let running = applied.map_or_else(String::new, |g| {
        format!(" (the cluster runs generation {g})")
    });
    value(
        false,
        reason::NOT_APPLIED_PAUSED,
        format!(
            "spec.paused is true: {wanted} is not applied{running}; set paused: false to apply it"
        ),
    )
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
#[path = "conditions_tests.rs"]
mod tests;
