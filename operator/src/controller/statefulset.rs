//! A reconcile step: the StatefulSet of store-node pods, built from the spec and what the earlier
//! steps decided (replicas during a scale-down, the configuration and password hashes that roll
//! the pods, the size the claims were made with). Left alone while its storage mode change is
//! refused: its volumes cannot change. A change someone made to it directly (`kubectl scale
//! statefulset`, `kubectl edit statefulset`) is set back and named in a Warning event.

use sessionstore_api::constants::reason;
use sessionstore_api::SessionCluster;

use super::children::reverted_note;
use super::context::Context;
use super::error::Error;
use super::refusals::Refusal;
use crate::apply::Applier;
use crate::resources::{self, StatefulSetInputs};
use crate::validate::ValidatedCluster;

/// Applies the StatefulSet unless the refusal forbids it. Returns whether it wrote.
pub(super) async fn apply(
    cluster: &SessionCluster,
    ctx: &Context,
    applier: &Applier,
    validated: &ValidatedCluster,
    refusal: &Refusal,
    inputs: &StatefulSetInputs,
) -> Result<bool, Error> {
    if refusal.mode_change {
        return Ok(false);
    }
    let statefulset = resources::build_statefulset(validated, inputs);
    let applied = applier.apply_reporting(&statefulset).await?;
    if !applied.reverted.is_empty() {
        let name = sessionstore_api::names::statefulset(&validated.name);
        ctx.publish(
            cluster,
            true,
            reason::OUTSIDE_CHANGE_REVERTED,
            reverted_note("StatefulSet", &name, &validated.name, &applied.reverted),
        )
        .await;
    }
    Ok(applied.wrote)
}
