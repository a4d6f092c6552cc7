//! A reconcile step for disc mode: growing the volume claims to a larger `storage.size`. The
//! StatefulSet's claim template is immutable, so each claim is patched; whether it may grow is
//! the StorageClass's call, and a refusal is explained rather than retried as a failure.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use sessionstore_api::constants::reason;
use sessionstore_api::{names, SessionCluster, StorageMode};

use super::context::Context;
use super::error::Error;
use super::inputs::Live;
use super::refusals::Refusal;
use crate::validate::{quantity_bytes, ValidatedCluster};

/// Grows the claims of a disc cluster whose StatefulSet was applied (its storage mode was not
/// refused). A refused expansion becomes the refusal's message unless one is already there.
pub(super) async fn expand(
    cluster: &SessionCluster,
    ctx: &Context,
    validated: &ValidatedCluster,
    live: &Live,
    refusal: &mut Refusal,
) -> Result<(), Error> {
    if validated.mode != StorageMode::Disc || refusal.mode_change {
        return Ok(());
    }
    let template_size = live.claim_size();
    if let Some(message) = expand_claims(cluster, ctx, validated, template_size.as_ref()).await? {
        refusal.message.get_or_insert(message);
    }
    Ok(())
}

/// Whether the API server refused a claim patch for a reason a retry cannot fix: the
/// StorageClass does not allow expansion (403 from the PersistentVolumeClaimResize admission) or
/// the claim cannot take the value (422).
fn expansion_refused(error: &kube::Error) -> Option<&str> {
    match error {
        kube::Error::Api(status) if status.code == 403 || status.code == 422 => {
            Some(status.message.as_str())
        }
        _ => None,
    }
}

/// Grows every claim below the spec's size (the StatefulSet's template cannot change). A refusal
/// the user must resolve (typically a StorageClass without `allowVolumeExpansion`) is returned as
/// an explanation for the `Degraded` condition rather than failing the reconcile; the next
/// reconcile tries again, so allowing expansion later is picked up.
async fn expand_claims(
    cluster: &SessionCluster,
    ctx: &Context,
    validated: &ValidatedCluster,
    template_size: Option<&Quantity>,
) -> Result<Option<String>, Error> {
    let (Some(wanted), Some(size)) = (validated.volume_size_bytes, validated.volume_size.clone())
    else {
        return Ok(None);
    };
    let Some(template) = template_size.and_then(quantity_bytes) else {
        return Ok(None);
    };
    if wanted <= template {
        return Ok(None);
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &validated.namespace);
    let claims = api
        .list(&ListParams::default().labels(&names::selector_string(&validated.name)))
        .await
        .map_err(|source| Error::ExpandClaims {
            name: validated.name.clone(),
            source,
        })?;
    let mut grown = Vec::new();
    let mut refusal = None;
    for claim in claims.items {
        let current = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(quantity_bytes)
            .unwrap_or(0);
        if current >= wanted {
            continue;
        }
        let claim_name = claim.name_any();
        let patched = api
            .patch(
                &claim_name,
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}}),
                ),
            )
            .await;
        match patched {
            Ok(_) => grown.push(claim_name),
            Err(source) => {
                let Some(message) = expansion_refused(&source) else {
                    return Err(Error::ExpandClaims {
                        name: validated.name.clone(),
                        source,
                    });
                };
                refusal = Some(format!(
                    "storage.size cannot grow to {}: the API server refused to expand claim {claim_name}: {message}. The volumes keep their size until the StorageClass allows expansion (allowVolumeExpansion: true)",
                    size.0
                ));
                break;
            }
        }
    }
    if !grown.is_empty() {
        ctx.publish(
            cluster,
            false,
            reason::VOLUMES_EXPANDED,
            format!("expanded {} to {}", grown.join(", "), size.0),
        )
        .await;
    }
    Ok(refusal)
}
