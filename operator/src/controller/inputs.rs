//! Dereferencing what a reconcile depends on beyond the spec: the live StatefulSet and the
//! cluster's pods (read before anything is written), the sandbox failures of pods stuck in
//! creation (from their events), and Secret values (for the auth step).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use sessionstore_api::constants::{reason, ANNOTATION_AUTH_REVISION};
use sessionstore_api::names;

use super::context::Context;
use super::error::Error;
use crate::apply::Applier;
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

    /// The password revision in the live pod template.
    pub(super) fn template_auth_revision(&self) -> Option<String> {
        self.statefulset
            .as_ref()?
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(ANNOTATION_AUTH_REVISION)
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

/// The value of `key` in Secret `secret`; `None` when the Secret or the key does not exist.
pub(super) async fn read_secret_value(
    ctx: &Context,
    namespace: &str,
    secret: &str,
    key: &str,
) -> Result<Option<SecretValue>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api
        .get_opt(secret)
        .await
        .map_err(|source| Error::ReadSecret {
            secret: secret.to_owned(),
            source,
        })?;
    Ok(found.and_then(|secret| {
        let revision = secret_revision(&secret);
        let bytes = secret.data?.remove(key)?.0;
        Some(SecretValue { bytes, revision })
    }))
}

/// One value of a Secret, with the revision of the Secret it was read from.
pub(super) struct SecretValue {
    /// The value.
    pub(super) bytes: Vec<u8>,
    /// [`secret_revision`] of the Secret.
    pub(super) revision: String,
}

/// `<uid>-<resourceVersion>` of a Secret: changes whenever the Secret is written, and tells
/// nothing about what it holds (a pod template may carry it where a hash of the value would
/// let whoever reads pods test guesses of the password).
pub(super) fn secret_revision(secret: &Secret) -> String {
    format!(
        "{}-{}",
        secret.metadata.uid.as_deref().unwrap_or_default(),
        secret
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    )
}

/// Whether `pod` waits for its sandbox: scheduled, and its container not created yet.
fn waits_for_sandbox(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = &pod.status else {
        return false;
    };
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled" && c.status == "True");
    let creating = match &status.container_statuses {
        None => true,
        Some(containers) => containers.iter().any(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("ContainerCreating")
        }),
    };
    scheduled && creating
}

/// For each pod still waiting for its sandbox, the message of its latest
/// `FailedCreatePodSandBox` event: the kubelet says why only there (a memory limit too small to
/// start a container is one). Best effort: without permission to list events (an older chart)
/// a pod is reported by its waiting state alone.
pub(super) async fn sandbox_failures(
    ctx: &Context,
    namespace: &str,
    pods: &[Pod],
) -> BTreeMap<String, String> {
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), namespace);
    let mut failures = BTreeMap::new();
    for pod in pods.iter().filter(|pod| waits_for_sandbox(pod)) {
        let Some(uid) = pod.uid() else {
            continue;
        };
        let fields = format!("involvedObject.uid={uid},reason={}", reason::SANDBOX_FAILED);
        match api.list(&ListParams::default().fields(&fields)).await {
            Ok(events) => {
                // The field selector already says so; an API server (or a test double) that
                // ignores it must not blame this pod for another's failure.
                let latest = events
                    .items
                    .into_iter()
                    .filter(|event| {
                        event.involved_object.uid.as_deref() == Some(uid.as_str())
                            && event.reason.as_deref() == Some(reason::SANDBOX_FAILED)
                    })
                    .max_by_key(|event| {
                        event
                            .last_timestamp
                            .as_ref()
                            .or(event.first_timestamp.as_ref())
                            .map(|t| t.0)
                            .or_else(|| event.event_time.as_ref().map(|t| t.0))
                    });
                if let Some(message) = latest.and_then(|event| event.message) {
                    failures.insert(pod.name_any(), message);
                }
            }
            Err(error) => {
                tracing::debug!(pod = %pod.name_any(), %error, "cannot list the pod's events");
            }
        }
    }
    failures
}
