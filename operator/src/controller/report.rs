//! A reconcile step, and the end of every reconcile: what was observed becomes the status. The
//! status is computed by the pure `status` module and written as a JSON merge patch only when it
//! changed, with an event for each condition change worth one. Also the status of a spec that is
//! invalid or paused, and of a reconcile that failed.

use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::{SessionCluster, SessionClusterStatus};

use super::context::{key, now, Context};
use super::error::Error;
use super::inputs::{Live, Password};
use super::refusals::Refusal;
use super::scale_down::Replicas;
use crate::status::{self, Observed};
use crate::validate::ValidatedCluster;

/// What this reconcile saw and decided, for the status.
pub(super) fn observed(
    validated: &ValidatedCluster,
    live: &Live,
    replicas: Replicas,
    members: Vec<NodeStatus>,
    refusal: Refusal,
    password: Password,
) -> Observed {
    let statefulset = live.statefulset_status();
    Observed {
        name: validated.name.clone(),
        generation: validated.generation,
        desired: validated.replicas,
        statefulset_replicas: replicas.statefulset,
        replicas: statefulset.replicas,
        ready: statefulset.ready_replicas.unwrap_or(0),
        updated: statefulset.updated_replicas.unwrap_or(0),
        rolling: statefulset.update_revision.is_some()
            && statefulset.current_revision != statefulset.update_revision,
        members,
        scale_down: replicas.scale_down,
        refused: refusal.message,
        auth_missing: password.missing,
    }
}

/// Computes the status from `observed` and writes it when it changed; returns it.
pub(super) async fn write_observed(
    ctx: &Context,
    cluster: &SessionCluster,
    old: &SessionClusterStatus,
    observed: &Observed,
) -> Result<SessionClusterStatus, Error> {
    let new = status::compute(old, observed, &now());
    write_status(ctx, cluster, old, &new).await?;
    Ok(new)
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
/// `memory` column once no node reports) is sent as `null`, because a merge patch keeps every
/// field it does not mention and the stale value would be written again on every reconcile.
pub fn status_merge_patch(
    old: &SessionClusterStatus,
    new: &SessionClusterStatus,
) -> serde_json::Value {
    let mut patch = serde_json::to_value(new).unwrap_or_default();
    if let (Some(patch), Ok(serde_json::Value::Object(old))) =
        (patch.as_object_mut(), serde_json::to_value(old))
    {
        for key in old.keys() {
            patch.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    patch
}
