//! Dereferencing what a reconcile depends on beyond the spec: the live StatefulSet and the
//! cluster's pods (read before anything is written), and the password Secret the pods mount
//! (read once the generated one is ensured, so a first reconcile hashes the password it made).

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};
use sessionstore_api::constants::ANNOTATION_AUTH_HASH;
use sessionstore_api::names;

use super::context::Context;
use super::error::Error;
use crate::apply::Applier;
use crate::resources;
use crate::validate::ValidatedCluster;

/// The live objects of a cluster, as read at the start of the reconcile.
pub(super) struct Live {
    /// The StatefulSet, once it exists.
    pub(super) statefulset: Option<StatefulSet>,
    /// The pods selected by the cluster's labels.
    pub(super) pods: Vec<Pod>,
}

impl Live {
    /// Reads the StatefulSet and lists the pods.
    pub(super) async fn read(
        ctx: &Context,
        applier: &Applier,
        validated: &ValidatedCluster,
    ) -> Result<Self, Error> {
        let name = &validated.name;
        let statefulset: Option<StatefulSet> = applier.get(&names::statefulset(name)).await?;
        let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &validated.namespace);
        let pods = pods_api
            .list(&ListParams::default().labels(&names::selector_string(name)))
            .await
            .map_err(|source| Error::ListPods {
                name: name.clone(),
                source,
            })?
            .items;
        Ok(Self { statefulset, pods })
    }

    /// The StatefulSet's `spec.replicas`, or `desired` before it exists.
    pub(super) fn statefulset_replicas(&self, desired: i32) -> i32 {
        self.statefulset
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(desired)
    }

    /// Whether the StatefulSet has volume claim templates (it was made in disc mode).
    pub(super) fn has_claim_templates(&self) -> bool {
        self.statefulset
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.volume_claim_templates.as_ref())
            .is_some_and(|t| !t.is_empty())
    }

    /// The storage request of the StatefulSet's claim template: the size its claims were made
    /// with, which the template keeps (it is immutable) when the claims grow.
    pub(super) fn claim_size(&self) -> Option<Quantity> {
        self.statefulset
            .as_ref()?
            .spec
            .as_ref()?
            .volume_claim_templates
            .as_ref()?
            .first()?
            .spec
            .as_ref()?
            .resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("storage")
            .cloned()
    }

    /// The password hash in the live pod template.
    fn template_auth_hash(&self) -> Option<String> {
        self.statefulset
            .as_ref()?
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(ANNOTATION_AUTH_HASH)
            .cloned()
    }

    /// The StatefulSet's status, empty before it exists.
    pub(super) fn statefulset_status(&self) -> StatefulSetStatus {
        self.statefulset
            .as_ref()
            .and_then(|s| s.status.clone())
            .unwrap_or_default()
    }
}

/// The password the pods mount, as far as the pod template needs it.
pub(super) struct Password {
    /// Its hash for the pod template (a change rolls the pods); `None` without auth.
    pub(super) hash: Option<String>,
    /// The Secret or its key is missing, explained for the `Degraded` condition.
    pub(super) missing: Option<String>,
}

/// Reads the password Secret the pods mount. A missing Secret keeps the live template's hash:
/// rolling now would replace running nodes with pods that cannot start.
pub(super) async fn password(
    ctx: &Context,
    validated: &ValidatedCluster,
    live: &Live,
) -> Result<Password, Error> {
    let Some(auth) = &validated.auth else {
        return Ok(Password {
            hash: None,
            missing: None,
        });
    };
    match read_secret_value(ctx, &validated.namespace, &auth.secret, &auth.key).await? {
        Some(password) => Ok(Password {
            hash: Some(resources::auth_hash(&validated.owner.uid, &password)),
            missing: None,
        }),
        None => Ok(Password {
            hash: live.template_auth_hash(),
            missing: Some(format!(
                "the password Secret {} with key {} does not exist: running nodes keep their password, but a node that restarts cannot start until it exists. Create it, or point auth.secretRef at an existing one",
                auth.secret, auth.key
            )),
        }),
    }
}

/// The value of `key` in Secret `secret`; `None` when the Secret or the key does not exist.
async fn read_secret_value(
    ctx: &Context,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api
        .get_opt(secret)
        .await
        .map_err(|source| Error::ReadSecret {
            secret: secret.to_owned(),
            source,
        })?;
    Ok(found
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove(key))
        .map(|bytes| bytes.0))
}

/// The password as text, for the leave call's `Authorization` header; a missing key or a value
/// that is not UTF-8 is an error.
pub(super) async fn read_password(
    ctx: &Context,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<String, Error> {
    let bytes = read_secret_value(ctx, namespace, secret, key)
        .await?
        .ok_or_else(|| Error::Password {
            secret: secret.to_owned(),
            message: format!("no key {key}"),
        })?;
    String::from_utf8(bytes)
        .map(|p| p.trim_end_matches('\n').to_owned())
        .map_err(|_| Error::Password {
            secret: secret.to_owned(),
            message: "not UTF-8".to_owned(),
        })
}
