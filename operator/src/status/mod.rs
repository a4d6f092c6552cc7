//! Computes the SessionCluster status from what was observed: the pods, the members'
//! `/v1/status`, a scale-down in progress, a refused change. Pure: the controller writes the
//! result only when it differs from the current status.
//!
//! `conditions` decides each condition by its own function, `pods` reads counts and stuck pods
//! from the pods, `members` turns the nodes' reports into `status.members`, `sessions` tells a
//! cluster that lost every session, `transitions` picks the condition changes worth an event.

pub mod conditions;
pub mod members;
mod observed;
pub mod pods;
pub mod sessions;
pub mod transitions;

#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sessionstore_api::constants::condition;
use sessionstore_api::{names, SessionClusterStatus};

pub use conditions::{condition_status, set_condition, ConditionValue};
pub use members::{members_synced, missing_peers};
pub use observed::Observed;
pub use transitions::{is_trouble, transitions, Transition};

/// The status for a valid, unpaused cluster.
pub fn compute(
    old: &SessionClusterStatus,
    observed: &Observed,
    now: &Time,
) -> SessionClusterStatus {
    let generation = observed.generation;
    let members = members::from_nodes(&observed.name, observed.desired, &observed.members);
    let (data, _) = sessions::next(old.data.as_ref(), &members, observed.desired, now);
    let (progressing, last_progress_time) =
        conditions::with_deadline(old, observed, conditions::progressing(observed), now);
    let degraded = conditions::degraded(
        observed,
        progressing.status,
        sessions::lost_message(data.as_ref(), observed.ram, now),
    );
    let computed = [
        (condition::AVAILABLE, conditions::available(old, observed)),
        (condition::PROGRESSING, progressing),
        (condition::DEGRADED, degraded),
        (condition::CLUSTERED, conditions::clustered(&members)),
        (
            condition::MEMORY_PRESSURE,
            conditions::memory_pressure(&members, observed.headroom_warning.as_deref()),
        ),
        (
            condition::RECONCILE_SUCCESS,
            conditions::reconciled(observed.refused.as_deref()),
        ),
        (condition::PAUSED, conditions::not_paused()),
    ];
    let mut list = old.conditions.clone();
    for (type_, value) in computed {
        conditions::set(&mut list, type_, value, generation, now);
    }
    SessionClusterStatus {
        observed_generation: generation,
        replicas: observed.replicas,
        ready_replicas: observed.ready,
        updated_replicas: observed.updated,
        ready: Some(format!("{}/{}", observed.ready, observed.desired)),
        memory: members::memory_column(&members),
        selector: Some(names::selector_string(&observed.name)),
        members,
        scale_down: observed.scale_down.clone(),
        last_progress_time,
        data,
        tls: observed.tls.clone(),
        conditions: list,
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
    conditions::set(
        &mut status.conditions,
        condition::RECONCILE_SUCCESS,
        conditions::invalid_spec_not_reconciled(message),
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        condition::DEGRADED,
        conditions::invalid_spec_degraded(message),
        generation,
        now,
    );
    status
}

/// The status while `spec.paused` is true: `Paused`, and `ReconcileSuccess` saying the spec is
/// not applied. `observedGeneration` stays at the generation last applied: the operator has not
/// carried out this one.
pub fn paused(
    old: &SessionClusterStatus,
    generation: Option<i64>,
    now: &Time,
) -> SessionClusterStatus {
    let mut status = old.clone();
    conditions::set(
        &mut status.conditions,
        condition::PAUSED,
        conditions::paused(),
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        condition::RECONCILE_SUCCESS,
        conditions::paused_not_applied(generation, old.observed_generation),
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
    conditions::set(
        &mut status.conditions,
        condition::RECONCILE_SUCCESS,
        conditions::reconcile_failed(message),
        generation,
        now,
    );
    status
}
