//! A reconcile step: the objects around the StatefulSet, built by `resources/` and written through
//! the [`Applier`] in a fixed order: ServiceAccount, ConfigMap (and the removal of keys someone
//! added to it), the generated password Secret (created once, never rewritten) or the removal of
//! one the spec no longer asks for, the headless and client Services, the PodDisruptionBudget,
//! and the NetworkPolicy or its removal. What it set back after a change made outside the
//! operator is returned as notices for Warning events.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
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
    /// For `Degraded`: the password could not be generated.
    pub(super) problem: Option<(&'static str, String)>,
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
    operator_namespace: &str,
    random_source: &Path,
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
    match resources::build_users_config_map(validated) {
        Some(users) => {
            if applier.apply(&users).await? {
                wrote.push("users ConfigMap");
            }
        }
        None => {
            applier
                .delete_owned::<ConfigMap>(
                    &names::users_config_map(&validated.name),
                    &validated.owner.uid,
                )
                .await?;
        }
    }
    let mut created_auth_secret = false;
    let mut problem = None;
    match &validated.auth {
        Some(auth) if auth.generated => {
            let exists = applier
                .get::<Secret>(&names::auth_secret(&validated.name))
                .await?
                .is_some();
            if !exists {
                match super::keys::random_hex(random_source, 32) {
                    Ok(password) => {
                        if applier
                            .create_if_absent(&resources::build_auth_secret(validated, &password))
                            .await?
                        {
                            wrote.push("Secret");
                            created_auth_secret = true;
                        }
                    }
                    Err(error) => {
                        problem = Some((
                            reason::RANDOMNESS_UNAVAILABLE,
                            super::keys::randomness_note("the password", &error),
                        ));
                    }
                }
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
    match resources::build_network_policy(validated, operator_namespace) {
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
        problem,
    })
}
