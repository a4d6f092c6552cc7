//! A reconcile step: the StatefulSet of store-node pods, built from the spec and what the earlier
//! steps decided (replicas during a scale-down, the configuration and password hashes that roll
//! the pods, the size the claims were made with). Left alone while its storage mode change is
//! refused: its volumes cannot change.

use super::error::Error;
use super::refusals::Refusal;
use crate::apply::Applier;
use crate::resources::{self, StatefulSetInputs};
use crate::validate::ValidatedCluster;

/// Applies the StatefulSet unless the refusal forbids it. Returns whether it wrote.
pub(super) async fn apply(
    applier: &Applier,
    validated: &ValidatedCluster,
    refusal: &Refusal,
    inputs: &StatefulSetInputs,
) -> Result<bool, Error> {
    if refusal.mode_change {
        return Ok(false);
    }
    let statefulset = resources::build_statefulset(validated, inputs);
    Ok(applier.apply(&statefulset).await?)
}
