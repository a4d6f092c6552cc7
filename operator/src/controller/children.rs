//! A reconcile step: the objects around the StatefulSet, built by `resources/` and written through
//! the [`Applier`] in a fixed order: ServiceAccount, ConfigMap (and the removal of keys someone
//! added to it), the generated password Secret (created once, never rewritten) or the removal of
//! one the spec no longer asks for, the headless and client Services, the PodDisruptionBudget,
//! and the NetworkPolicy or its removal. What it set back after a change made outside the
//! operator is returned as notices for Warning events.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use sessionstore_api::constants::reason;
use sessionstore_api::names;

use super::error::Error;
use crate::apply::Applier;
use crate::resources;
use crate::validate::ValidatedCluster;

/// What applying the children produced.
pub(super) struct Children {
    /// The kinds written, for the log line.
    pub(super) wrote: Vec<&'static str>,
    /// The ConfigMap's hash for the pod template: a new configuration rolls the pods.
    pub(super) config_hash: String,
    /// The generated password Secret was created by this reconcile (first, or again after it
    /// was deleted).
    pub(super) created_auth_secret: bool,
    /// Changes made outside the operator that it undid: event reason and note.
    pub(super) notices: Vec<(&'static str, String)>,
}

/// The note of an event saying that `kind` `name` was changed outside the operator and which
/// fields were set back to what SessionCluster `cluster` asks for.
pub(super) fn reverted_note(kind: &str, name: &str, cluster: &str, fields: &[String]) -> String {
    format!(
        "{kind} {name} was changed outside the operator; set back to what SessionCluster {cluster} asks for: {}. Change the SessionCluster instead (kubectl edit scl {cluster}, or kubectl scale scl {cluster} --replicas N)",
        fields.join(", ")
    )
}

/// Applies every child but the StatefulSet, skipping those that already match.
pub(super) async fn apply(
    applier: &Applier,
    validated: &ValidatedCluster,
) -> Result<Children, Error> {
    let mut wrote = Vec::new();
    let mut notices = Vec::new();
    if applier
        .apply(&resources::build_service_account(validated))
        .await?
    {
        wrote.push("ServiceAccount");
    }
    let config_map = resources::build_config_map(validated);
    let config_map_name = names::config_map(&validated.name);
    let applied = applier.apply_reporting(&config_map).await?;
    if applied.wrote {
        wrote.push("ConfigMap");
    }
    if !applied.reverted.is_empty() {
        notices.push((
            reason::OUTSIDE_CHANGE_REVERTED,
            reverted_note(
                "ConfigMap",
                &config_map_name,
                &validated.name,
                &applied.reverted,
            ),
        ));
    }
    let keep: Vec<&str> = config_map
        .data
        .iter()
        .flatten()
        .map(|(key, _)| key.as_str())
        .collect();
    let removed = applier.remove_extra_keys(&config_map_name, &keep).await?;
    if !removed.is_empty() {
        notices.push((
            reason::EXTRA_CONFIG_REMOVED,
            format!(
                "ConfigMap {config_map_name} held keys the operator does not set: {}; removed them, as the nodes read the whole ConfigMap as their environment. Set node options through the SessionCluster spec",
                removed.join(", ")
            ),
        ));
    }
    let mut created_auth_secret = false;
    match &validated.auth {
        Some(auth) if auth.generated => {
            let password = generate_password();
            if applier
                .create_if_absent(&resources::build_auth_secret(validated, &password))
                .await?
            {
                wrote.push("Secret");
                created_auth_secret = true;
            }
        }
        _ => {
            applier
                .delete_owned::<Secret>(&names::auth_secret(&validated.name), &validated.owner.uid)
                .await?;
        }
    }
    if applier
        .apply(&resources::build_headless_service(validated))
        .await?
    {
        wrote.push("headless Service");
    }
    if applier
        .apply(&resources::build_client_service(validated))
        .await?
    {
        wrote.push("client Service");
    }
    if applier
        .apply(&resources::build_pod_disruption_budget(validated))
        .await?
    {
        wrote.push("PodDisruptionBudget");
    }
    match resources::build_network_policy(validated) {
        Some(policy) => {
            if applier.apply(&policy).await? {
                wrote.push("NetworkPolicy");
            }
        }
        None => {
            applier
                .delete_owned::<NetworkPolicy>(
                    &names::network_policy(&validated.name),
                    &validated.owner.uid,
                )
                .await?;
        }
    }
    Ok(Children {
        wrote,
        config_hash: resources::config_hash(&config_map),
        created_auth_secret,
        notices,
    })
}

/// 32 random bytes as hex, from the kernel's random source.
fn generate_password() -> String {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        // Fall back to hashing time and process id; still unguessable across clusters in
        // practice, and logged so an operator can rotate it.
        tracing::warn!("/dev/urandom unavailable; deriving the password from time and pid");
        use sha2::Digest;
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(&sha2::Sha256::digest(seed.as_bytes()));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
