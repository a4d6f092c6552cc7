//! A reconcile step, and the end of every reconcile: what was observed becomes the status. The
//! status is computed by the pure `status` module and written as a JSON merge patch only when it
//! changed, with an event for each condition change worth one, for an OOM kill, for sessions
//! lost in a full restart and for a memory limit with too little headroom. Also the status of a
//! spec that is invalid or paused, and of a reconcile that failed.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use sessionstore_api::constants::reason;
use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::{SessionCluster, SessionClusterStatus, StorageMode};

use super::context::{key, now, Context};
use super::error::Error;
use super::inputs::Live;
use super::refusals::Refusal;
use super::scale_down::Replicas;
use crate::status::pods::{self, PodView};
use crate::status::{self, Observed};
use crate::validate::ValidatedCluster;

/// What this reconcile saw and decided, for the status.
#[allow(clippy::too_many_arguments)]
pub(super) fn observed(
    validated: &ValidatedCluster,
    live: &Live,
    pods: &[PodView],
    replicas: Replicas,
    members: Vec<NodeStatus>,
    refusal: Refusal,
    auth_problem: Option<(&'static str, String)>,
    tls: Option<sessionstore_api::TlsStatus>,
    sandbox_failures: &BTreeMap<String, String>,
) -> Observed {
    let statefulset = live.statefulset_status();
    let counts = pods::counts(
        pods,
        validated.replicas,
        statefulset.update_revision.as_deref(),
    );
    Observed {
        name: validated.name.clone(),
        generation: validated.generation,
        desired: validated.replicas,
        statefulset_replicas: replicas.statefulset,
        replicas: counts.replicas,
        ready: counts.ready,
        updated: counts.updated,
        rolling: statefulset.update_revision.is_some()
            && statefulset.current_revision != statefulset.update_revision,
        members,
        scale_down: replicas.scale_down,
        refused: refusal.message,
        auth_problem,
        tls,
        pod_problems: pods::problems(pods, sandbox_failures, &now()),
        progress_deadline_seconds: validated
            .progress_deadline
            .as_secs()
            .try_into()
            .unwrap_or(i64::MAX),
        headroom_warning: validated.headroom_warning.clone(),
        ram: validated.mode == StorageMode::Ram,
    }
}

/// Computes the status from `observed` and writes it when it changed, with the events of what
/// it found; returns it.
pub(super) async fn write_observed(
    ctx: &Context,
    cluster: &SessionCluster,
    old: &SessionClusterStatus,
    observed: &Observed,
) -> Result<SessionClusterStatus, Error> {
    let now = now();
    let new = status::compute(old, observed, &now);
    write_status(ctx, cluster, old, &new).await?;
    let lost_at =
        |status: &SessionClusterStatus| status.data.as_ref().and_then(|d| d.lost_at.clone());
    if lost_at(&new).is_some() && lost_at(&new) != lost_at(old) {
        if let Some(message) = status::sessions::lost_message(new.data.as_ref(), observed.ram, &now)
        {
            ctx.publish(cluster, true, reason::SESSIONS_LOST, message)
                .await;
        }
    }
    if let Some(warning) = &observed.headroom_warning {
        // Once per spec generation, not on every reconcile; the MemoryPressure message keeps it.
        if old.observed_generation != observed.generation {
            ctx.publish(cluster, true, reason::MEMORY_HEADROOM_LOW, warning.clone())
                .await;
        }
    }
    Ok(new)
}

/// Publishes a Warning event for each OOM kill among `pods` not reported yet, and remembers
/// their restart counts.
pub(super) async fn oom_kills(ctx: &Context, cluster: &SessionCluster, pods: &[PodView]) {
    let cluster_key = key(cluster);
    let kills = match ctx.restarts.lock() {
        Ok(mut restarts) => {
            let seen = restarts.entry(cluster_key).or_default();
            let kills = pods::oom_kills(pods, seen, &now());
            *seen = pods
                .iter()
                .map(|pod| (pod.uid.clone(), pod.restarts))
                .collect::<HashMap<_, _>>();
            kills
        }
        Err(_) => Vec::new(),
    };
    let limit = cluster
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .map_or_else(
            || crate::validate::DEFAULT_MEMORY.to_owned(),
            |q| q.0.clone(),
        );
    for kill in kills {
        let pod = pods.iter().find(|pod| pod.name == kill.pod);
        let related = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(kill.pod.clone()),
            namespace: cluster.namespace(),
            uid: pod.map(|pod| pod.uid.clone()),
            ..ObjectReference::default()
        };
        ctx.publish_related(
            cluster,
            true,
            reason::OOM_KILLED,
            format!(
                "node {} was OOM-killed{} (restart {}): it used more than resources.limits.memory {limit}. Raise the limit or lower memory.highWatermark",
                kill.pod,
                kill.at.map(|t| format!(" at {}", t.0)).unwrap_or_default(),
                kill.restarts
            ),
            Some(related),
        )
        .await;
    }
}

/// Says in `ReconcileSuccess` that the reconcile failed and is retried. Best effort: the error
/// itself is what the backoff acts on.
pub(super) async fn failure(ctx: &Context, cluster: &SessionCluster, error: &Error) {
    tracing::warn!(cluster = %key(cluster), %error, "reconcile failed");
    let old = cluster.status.clone().unwrap_or_default();
    let new = status::failed(
        &old,
        cluster.metadata.generation,
        &error.to_string(),
        &now(),
    );
    let _ = write_status(ctx, cluster, &old, &new).await;
}

/// Writes `new` over `old` unless they are equal, and publishes an event per transition.
/// Returns whether it wrote.
pub(super) async fn write_status(
    ctx: &Context,
    cluster: &SessionCluster,
    old: &SessionClusterStatus,
    new: &SessionClusterStatus,
) -> Result<bool, Error> {
    if old == new && cluster.status.is_some() {
        return Ok(false);
    }
    let name = cluster.name_any();
    let namespace = cluster.namespace().ok_or(Error::MissingMetadata)?;
    let api: Api<SessionCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status_merge_patch(old, new) })),
    )
    .await
    .map_err(|source| Error::Status {
        name: name.clone(),
        source,
    })?;
    for transition in status::transitions(&old.conditions, &new.conditions) {
        let c = &transition.condition;
        // Announced by an event of its own, with when and how much (`write_observed`).
        if c.reason == reason::SESSIONS_LOST {
            continue;
        }
        ctx.publish(
            cluster,
            transition.warning,
            &c.reason,
            format!("{} is {}: {}", c.type_, c.status, c.message),
        )
        .await;
    }
    Ok(true)
}

/// `new` as a JSON merge patch over `old`: a field `new` leaves out (a finished `scaleDown`, the
/// `memory` column once no node reports, `data.heldBy` once no node holds keys) is sent as
/// `null`, at any depth, because a merge patch keeps every field it does not mention and the
/// stale value would be read back on the next reconcile.
pub fn status_merge_patch(
    old: &SessionClusterStatus,
    new: &SessionClusterStatus,
) -> serde_json::Value {
    let mut patch = serde_json::to_value(new).unwrap_or_default();
    if let Ok(old) = serde_json::to_value(old) {
        null_what_is_gone(&mut patch, &old);
    }
    patch
}

/// Adds `null` to `patch` for every object field of `old` that `patch` lacks, recursively
/// through the objects both hold (arrays are replaced whole by a merge patch).
fn null_what_is_gone(patch: &mut serde_json::Value, old: &serde_json::Value) {
    let (Some(patch), Some(old)) = (patch.as_object_mut(), old.as_object()) else {
        return;
    };
    for (key, old_value) in old {
        match patch.get_mut(key) {
            Some(value) => null_what_is_gone(value, old_value),
            None => {
                patch.insert(key.clone(), serde_json::Value::Null);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sessionstore_api::{DataStatus, SessionClusterStatus};

    use super::status_merge_patch;

    /// RFC 7396: what the API server does with a merge patch.
    fn apply(target: &mut serde_json::Value, patch: &serde_json::Value) {
        let Some(fields) = patch.as_object() else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = serde_json::json!({});
        }
        if let Some(object) = target.as_object_mut() {
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    apply(
                        object.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
    }

    /// The nodes that held keys are gone after every node restarted empty: the stored status
    /// must lose them too, or the next reconcile finds the same loss again (a later time,
    /// "up to 0 keys").
    #[test]
    fn a_nested_field_that_is_gone_is_removed_by_the_patch() {
        let old = SessionClusterStatus {
            data: Some(DataStatus {
                held_by: vec!["a".into(), "b".into()],
                keys: 50,
                ..DataStatus::default()
            }),
            ..SessionClusterStatus::default()
        };
        let new = SessionClusterStatus {
            data: Some(DataStatus {
                held_by: Vec::new(),
                keys: 0,
                lost_at: Some("2026-12-06T06:04:51Z".into()),
                lost_keys: 50,
            }),
            ..SessionClusterStatus::default()
        };
        for (old, new) in [
            (&old, &new),
            (&new, &old),
            (&new, &SessionClusterStatus::default()),
        ] {
            let mut stored = serde_json::to_value(old).expect("json");
            apply(&mut stored, &status_merge_patch(old, new));
            assert_eq!(stored, serde_json::to_value(new).expect("json"));
        }
    }
}
