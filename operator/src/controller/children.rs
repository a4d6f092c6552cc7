//! A reconcile step: the objects around the StatefulSet, built by `resources/` and written through
//! the [`Applier`] in a fixed order: ServiceAccount, ConfigMap, the generated password Secret
//! (created once, never rewritten) or the removal of one the spec no longer asks for, the headless
//! and client Services, the PodDisruptionBudget, and the NetworkPolicy or its removal.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
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
}

/// Applies every child but the StatefulSet, skipping those that already match.
pub(super) async fn apply(
    applier: &Applier,
    validated: &ValidatedCluster,
) -> Result<Children, Error> {
    let mut wrote = Vec::new();
    if applier
        .apply(&resources::build_service_account(validated))
        .await?
    {
        wrote.push("ServiceAccount");
    }
    let config_map = resources::build_config_map(validated);
    if applier.apply(&config_map).await? {
        wrote.push("ConfigMap");
    }
    match &validated.auth {
        Some(auth) if auth.generated => {
            let password = generate_password();
            if applier
                .create_if_absent(&resources::build_auth_secret(validated, &password))
                .await?
            {
                wrote.push("Secret");
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
