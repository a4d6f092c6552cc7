//! Which condition changes are worth an event: a Warning on the way into trouble, a Normal one
//! on the way out or for other progress.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use sessionstore_api::constants::{condition, reason};

/// Whether a condition in this state means trouble (a Warning event on the way in). Nodes still
/// joining after a scale-up or a restart are not, nor is a spec left unapplied because the user
/// paused the cluster.
pub fn is_trouble(condition: &Condition) -> bool {
    let trouble = matches!(
        (condition.type_.as_str(), condition.status.as_str()),
        (condition::AVAILABLE, "False")
            | (condition::DEGRADED, "True")
            | (condition::CLUSTERED, "False")
            | (condition::MEMORY_PRESSURE, "True")
            | (condition::RECONCILE_SUCCESS, "False")
    ) || (condition.type_ == condition::PROGRESSING
        && condition.reason == reason::PROGRESS_DEADLINE_EXCEEDED);
    trouble
        && condition.reason != reason::NODES_JOINING
        && condition.reason != reason::NOT_APPLIED_PAUSED
}

/// A condition that changed status between `old` and `new`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new condition.
    pub condition: Condition,
    /// True when it moves into trouble (Warning), false for progress (Normal).
    pub warning: bool,
}

/// Conditions whose status changed, or that turned into trouble or into another kind of trouble
/// without changing status (nodes joining, then a partition; nodes not ready, then an image that
/// cannot be pulled), worth an event. A condition that appears for the first time is
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
                        && (!trouble
                            || (is_trouble(previous) && previous.reason == condition.reason)) =>
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
