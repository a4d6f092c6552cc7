//! The first reconcile step: whether to reconcile at all. A cluster being deleted is left to the
//! garbage collector, an invalid spec is reported (a condition and an event, then wait for a
//! change: the user's problem, not a retry loop), a paused one only shows it is paused and that
//! its spec is not applied (its `observedGeneration` stays where it was).

use std::time::Duration;

use kube::ResourceExt;
use sessionstore_api::{SessionCluster, SessionClusterStatus};

use super::context::{key, now, Context};
use super::error::Error;
use super::report;
use crate::status;
use crate::validate::{validate, ValidatedCluster};

/// The validated cluster to reconcile, or `None` when there is nothing to do until it changes.
pub(super) async fn admit(
    cluster: &SessionCluster,
    ctx: &Context,
    old: &SessionClusterStatus,
) -> Result<Option<ValidatedCluster>, Error> {
    let namespace = cluster.namespace().ok_or(Error::MissingMetadata)?;
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove every child.
        ctx.forget(&namespace, &cluster.name_any());
        return Ok(None);
    }
    let generation = cluster.metadata.generation;
    let validated = match validate(cluster, &ctx.config.default_image) {
        Ok(validated) => validated,
        Err(invalid) => {
            tracing::info!(cluster = %key(cluster), reason = %invalid, "invalid spec");
            ctx.metrics.observe(Duration::ZERO, Some("invalid_spec"));
            let new = status::invalid(old, generation, &invalid.0, &now());
            report::write_status(ctx, cluster, old, &new).await?;
            return Ok(None);
        }
    };
    if validated.paused {
        let new = status::paused(old, generation, &now());
        report::write_status(ctx, cluster, old, &new).await?;
        return Ok(None);
    }
    Ok(Some(validated))
}
