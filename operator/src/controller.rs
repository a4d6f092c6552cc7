//! The SessionCluster controller: validate → build → apply → status, plus the lifecycle steps
//! that need the live cluster (safe scale-down, volume growth, member polling). Runs one
//! kube-runtime `Controller` per watched namespace (or one for all).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Client, Resource, ResourceExt};
use sessionstore_api::constants::{
    reason, ANNOTATION_AUTH_HASH, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_MANAGED_BY_VALUE,
};
use sessionstore_api::{ScaleDownStatus, SessionCluster, SessionClusterStatus, StorageMode};

use crate::apply::{Applier, ApplyError};
use crate::metrics::Metrics;
use crate::naming;
use crate::node_client::{NodeApi, NodeStatus};
use crate::resources::{self, StatefulSetInputs};
use crate::status::{self, Observed};
use crate::validate::{quantity_bytes, validate, ValidatedCluster};

/// Reporter name on events.
pub const REPORTER: &str = "sessionstore-operator";

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// store-node image when the spec names none.
    pub default_image: String,
    /// How long leaving nodes get before the StatefulSet is lowered anyway.
    pub leave_timeout: Duration,
    /// Requeue of a steady cluster (member polling for memory and peers).
    pub steady_requeue: Duration,
    /// Requeue while something is in progress.
    pub progress_requeue: Duration,
    /// First requeue while the members are not all synced (not every node reported, is
    /// `ready` and sees every other one); doubled on each further unsynced poll.
    pub unsynced_requeue: Duration,
    /// Bound on the doubled unsynced requeue.
    pub unsynced_requeue_max: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            default_image: format!("sessionstore/store-node:{}", env!("CARGO_PKG_VERSION")),
            leave_timeout: Duration::from_secs(120),
            steady_requeue: Duration::from_secs(60),
            progress_requeue: Duration::from_secs(5),
            unsynced_requeue: Duration::from_secs(1),
            unsynced_requeue_max: Duration::from_secs(30),
        }
    }
}

/// A reconcile failure the operator retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing or reading a child object failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Listing the cluster's pods failed.
    #[error("failed to list pods of {name}: {source}")]
    ListPods {
        /// SessionCluster name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Listing or patching volume claims failed.
    #[error("failed to expand volume claims of {name}: {source}")]
    ExpandClaims {
        /// SessionCluster name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("failed to update the status of {name}: {source}")]
    Status {
        /// SessionCluster name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Reading the password Secret failed.
    #[error("failed to read password Secret {secret}: {source}")]
    ReadSecret {
        /// Secret name.
        secret: String,
        /// API error.
        source: kube::Error,
    },
    /// The password for the leave call is missing or not text.
    #[error("failed to read password Secret {secret}: {message}")]
    Password {
        /// Secret name.
        secret: String,
        /// What went wrong.
        message: String,
    },
    /// The object has no namespace or name.
    #[error("SessionCluster without namespace or name")]
    MissingMetadata,
}

fn api_error(error: &Error) -> Option<&kube::Error> {
    match error {
        Error::Apply(
            ApplyError::Read { source, .. }
            | ApplyError::Apply { source, .. }
            | ApplyError::Create { source, .. }
            | ApplyError::Delete { source, .. },
        )
        | Error::ListPods { source, .. }
        | Error::ExpandClaims { source, .. }
        | Error::ReadSecret { source, .. }
        | Error::Status { source, .. } => Some(source),
        _ => None,
    }
}

impl Error {
    /// The namespace is being deleted (or is gone): the SessionCluster goes with it, so there is
    /// nothing to retry or report. The controller's cache sees the cluster a little longer than
    /// the API server, and writes into a terminating namespace are refused with 403.
    pub fn namespace_gone(&self) -> bool {
        match api_error(self) {
            Some(kube::Error::Api(status)) => {
                (status.code == 403 && status.message.contains("because it is being terminated"))
                    || (status.code == 404 && status.message.starts_with("namespaces "))
            }
            _ => false,
        }
    }

    /// Category for the failure metric.
    pub fn category(&self) -> &'static str {
        if self.namespace_gone() {
            return "namespace_deleted";
        }
        match self {
            Self::MissingMetadata => "invalid_object",
            Self::Password { .. } => "password",
            _ => "api",
        }
    }
}

/// Shared state of the reconciles.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Calls to nodes.
    pub node_api: Arc<dyn NodeApi>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Settings.
    pub config: ControllerConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per cluster, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Consecutive polls per cluster that found the members not all synced.
    unsynced_polls: Mutex<HashMap<String, u32>>,
    /// Clusters already told that the monitoring CRDs are missing.
    monitoring_warned: Mutex<HashSet<String>>,
    /// Clusters with monitoring disabled whose leftover monitoring objects were deleted.
    monitoring_cleaned: Mutex<HashSet<String>>,
}

impl Context {
    /// A context.
    pub fn new(
        client: Client,
        node_api: Arc<dyn NodeApi>,
        config: ControllerConfig,
        metrics: Arc<Metrics>,
        identity: &str,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTER.to_owned(),
                instance: Some(identity.to_owned()),
            },
        );
        Self {
            client,
            node_api,
            recorder,
            config,
            metrics,
            failures: Mutex::default(),
            unsynced_polls: Mutex::default(),
            monitoring_warned: Mutex::default(),
            monitoring_cleaned: Mutex::default(),
        }
    }

    /// Drops what the operator keeps about a deleted cluster: its node gauges, its backoff and
    /// unsynced-poll counts, its "monitoring CRDs missing" notes.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.metrics.forget_cluster(namespace, name);
        let cluster = format!("{namespace}/{name}");
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&cluster);
        }
        if let Ok(mut polls) = self.unsynced_polls.lock() {
            polls.remove(&cluster);
        }
        if let Ok(mut warned) = self.monitoring_warned.lock() {
            let prefix = format!("{cluster}/");
            warned.retain(|entry| !entry.starts_with(&prefix));
        }
        if let Ok(mut cleaned) = self.monitoring_cleaned.lock() {
            cleaned.remove(&cluster);
        }
    }

    async fn publish(&self, cluster: &SessionCluster, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &cluster.object_ref(&()))
            .await
        {
            match &error {
                // The namespace is being deleted, and the cluster with it.
                kube::Error::Api(status) if status.message.contains("being terminated") => {
                    tracing::debug!(cluster = %cluster.name_any(), %error, "event not published");
                }
                _ => {
                    tracing::warn!(cluster = %cluster.name_any(), %error, "failed to publish event")
                }
            }
        }
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn key(cluster: &SessionCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// Reconciles one SessionCluster.
pub async fn reconcile(cluster: Arc<SessionCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    ctx.metrics.observe(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    match &result {
        Ok(_) => {
            if let Ok(mut failures) = ctx.failures.lock() {
                failures.remove(&key(&cluster));
            }
        }
        Err(error) if error.namespace_gone() => {
            tracing::debug!(cluster = %key(&cluster), %error, "namespace is being deleted");
            return Ok(Action::await_change());
        }
        Err(error) => {
            tracing::warn!(cluster = %key(&cluster), %error, "reconcile failed");
            let old = cluster.status.clone().unwrap_or_default();
            let new = status::failed(
                &old,
                cluster.metadata.generation,
                &error.to_string(),
                &now(),
            );
            // Best effort: the error itself is what the backoff acts on.
            let _ = write_status(&ctx, &cluster, &old, &new).await;
        }
    }
    result
}

/// Backoff after a failed reconcile: 5s doubling per consecutive failure, at most 5 minutes.
pub fn error_policy(cluster: Arc<SessionCluster>, _error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = match ctx.failures.lock() {
        Ok(mut failures) => {
            let count = failures.entry(key(&cluster)).or_insert(0);
            *count = count.saturating_add(1);
            *count
        }
        Err(_) => 1,
    };
    let seconds = 5u64
        .saturating_mul(1 << attempts.min(6).saturating_sub(1))
        .min(300);
    Action::requeue(Duration::from_secs(seconds))
}

async fn write_status(
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

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone())
}

fn http_address(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{}", sessionstore_api::constants::HTTP_PORT)
    } else {
        format!("{ip}:{}", sessionstore_api::constants::HTTP_PORT)
    }
}

fn template_auth_hash(statefulset: &StatefulSet) -> Option<String> {
    statefulset
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

fn claim_template_size(statefulset: &StatefulSet) -> Option<Quantity> {
    statefulset
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

async fn reconcile_inner(cluster: &SessionCluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().ok_or(Error::MissingMetadata)?;
    let name = cluster.name_any();
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove every child.
        ctx.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let old = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;

    let validated = match validate(cluster, &ctx.config.default_image) {
        Ok(validated) => validated,
        Err(invalid) => {
            tracing::info!(cluster = %key(cluster), reason = %invalid, "invalid spec");
            ctx.metrics.observe(Duration::ZERO, Some("invalid_spec"));
            let new = status::invalid(&old, generation, &invalid.0, &now());
            write_status(ctx, cluster, &old, &new).await?;
            return Ok(Action::await_change());
        }
    };
    if validated.paused {
        let new = status::paused(&old, generation, &now());
        write_status(ctx, cluster, &old, &new).await?;
        return Ok(Action::await_change());
    }

    let applier = Applier::new(ctx.client.clone(), &namespace);
    let existing: Option<StatefulSet> = applier.get(&naming::statefulset(&name)).await?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods = pods_api
        .list(&ListParams::default().labels(&naming::selector_string(&name)))
        .await
        .map_err(|source| Error::ListPods {
            name: name.clone(),
            source,
        })?
        .items;

    // Changes a StatefulSet cannot take.
    let existing_has_claims = existing
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|t| !t.is_empty());
    let mut refused = None;
    let mode_refused =
        existing.is_some() && existing_has_claims != (validated.mode == StorageMode::Disc);
    if mode_refused {
        refused = Some(format!(
            "storage.mode cannot change from {} to {}: the StatefulSet's volumes are fixed. Set it back, or create a new SessionCluster with the new mode and move clients to it",
            if existing_has_claims { "disc" } else { "ram" },
            validated.mode.as_str()
        ));
    }
    let claim_size = existing.as_ref().and_then(claim_template_size);
    if let (Some(current), Some(wanted)) = (
        claim_size.as_ref().and_then(quantity_bytes),
        validated.volume_size_bytes,
    ) {
        if wanted < current {
            refused = Some(format!(
                "storage.size cannot shrink from {} to {}: Kubernetes cannot shrink a volume. The volumes keep their size",
                claim_size.as_ref().map(|q| q.0.as_str()).unwrap_or_default(),
                validated.volume_size.as_ref().map(|q| q.0.as_str()).unwrap_or_default()
            ));
        }
    }

    // Children.
    let mut wrote = Vec::new();
    if applier
        .apply(&resources::build_service_account(&validated))
        .await?
    {
        wrote.push("ServiceAccount");
    }
    let config_map = resources::build_config_map(&validated);
    if applier.apply(&config_map).await? {
        wrote.push("ConfigMap");
    }
    match &validated.auth {
        Some(auth) if auth.generated => {
            let password = generate_password();
            if applier
                .create_if_absent(&resources::build_auth_secret(&validated, &password))
                .await?
            {
                wrote.push("Secret");
            }
        }
        _ => {
            applier
                .delete_owned::<Secret>(&naming::auth_secret(&name), &validated.owner.uid)
                .await?;
        }
    }
    // The password the pods mount: its hash in the pod template rolls them when it changes. A
    // missing Secret keeps the previous hash: rolling now would replace running nodes with pods
    // that cannot start.
    let (auth_hash, auth_missing) = match &validated.auth {
        None => (None, None),
        Some(auth) => match read_secret_value(ctx, &namespace, &auth.secret, &auth.key).await? {
            Some(password) => (
                Some(resources::auth_hash(&validated.owner.uid, &password)),
                None,
            ),
            None => (
                existing.as_ref().and_then(template_auth_hash),
                Some(format!(
                    "the password Secret {} with key {} does not exist: running nodes keep their password, but a node that restarts cannot start until it exists. Create it, or point auth.secretRef at an existing one",
                    auth.secret, auth.key
                )),
            ),
        },
    };
    if applier
        .apply(&resources::build_headless_service(&validated))
        .await?
    {
        wrote.push("headless Service");
    }
    if applier
        .apply(&resources::build_client_service(&validated))
        .await?
    {
        wrote.push("client Service");
    }
    if applier
        .apply(&resources::build_pod_disruption_budget(&validated))
        .await?
    {
        wrote.push("PodDisruptionBudget");
    }
    match resources::build_network_policy(&validated) {
        Some(policy) => {
            if applier.apply(&policy).await? {
                wrote.push("NetworkPolicy");
            }
        }
        None => {
            applier
                .delete_owned::<NetworkPolicy>(&naming::network_policy(&name), &validated.owner.uid)
                .await?;
        }
    }

    // Scale-down safety: nodes leave before the StatefulSet is lowered.
    let current_replicas = existing
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(validated.replicas);
    let (replicas, scale_down) =
        scale_down_step(cluster, ctx, &validated, current_replicas, &pods, &old).await?;

    if !mode_refused {
        let statefulset = resources::build_statefulset(
            &validated,
            &StatefulSetInputs {
                replicas,
                config_hash: resources::config_hash(&config_map),
                auth_hash,
                claim_size: claim_size.clone(),
            },
        );
        if applier.apply(&statefulset).await? {
            wrote.push("StatefulSet");
        }
    }
    if validated.mode == StorageMode::Disc && !mode_refused {
        if let Some(refusal) = expand_claims(cluster, ctx, &validated, claim_size.as_ref()).await? {
            refused.get_or_insert(refusal);
        }
    }
    monitoring(cluster, ctx, &applier, &validated).await?;
    if !wrote.is_empty() {
        tracing::info!(cluster = %key(cluster), objects = ?wrote, "applied");
    }

    // Status.
    let members = poll_members(ctx, &pods, &name, replicas).await;
    record_member_metrics(ctx, &namespace, &name, replicas, &members);
    let sts_status = existing
        .as_ref()
        .and_then(|s| s.status.clone())
        .unwrap_or_default();
    let observed = Observed {
        name: name.clone(),
        generation,
        desired: validated.replicas,
        statefulset_replicas: replicas,
        replicas: sts_status.replicas,
        ready: sts_status.ready_replicas.unwrap_or(0),
        updated: sts_status.updated_replicas.unwrap_or(0),
        rolling: sts_status.update_revision.is_some()
            && sts_status.current_revision != sts_status.update_revision,
        members,
        scale_down,
        refused,
        auth_missing,
    };
    let new = status::compute(&old, &observed, &now());
    write_status(ctx, cluster, &old, &new).await?;

    let progressing = status::condition_status(
        &new.conditions,
        sessionstore_api::constants::condition::PROGRESSING,
    ) != Some("False")
        || wrote.contains(&"StatefulSet");
    // The backoff counts unsynced polls of a cluster at rest; a rollout or scaling polls at the
    // progress rate and starts the count afresh once it is done.
    let unsynced_polls = match ctx.unsynced_polls.lock() {
        Ok(mut polls) if progressing || status::members_synced(&new, validated.replicas) => {
            polls.remove(&key(cluster));
            0
        }
        Ok(mut polls) => {
            let count = polls.entry(key(cluster)).or_insert(0);
            *count = count.saturating_add(1);
            *count
        }
        Err(_) => 1,
    };
    Ok(Action::requeue(requeue_delay(
        &ctx.config,
        progressing,
        unsynced_polls,
    )))
}

/// When to look at a cluster again if no watched object changes before: soon while something is
/// in progress; after 1 s, 2 s, 4 s, ... (bounded) while the members are not all synced, which is
/// how `Clustered` comes back seconds after the peers reconnected to a restarted pod rather than
/// at the next steady poll; slowly when steady (member polling for memory, no API writes).
pub fn requeue_delay(
    config: &ControllerConfig,
    progressing: bool,
    unsynced_polls: u32,
) -> Duration {
    if progressing {
        return config.progress_requeue;
    }
    let Some(doublings) = unsynced_polls.checked_sub(1) else {
        return config.steady_requeue;
    };
    config
        .unsynced_requeue
        .saturating_mul(1 << doublings.min(16))
        .min(config.unsynced_requeue_max)
}

/// The SessionCluster a pod belongs to: pods carry the cluster name in the `instance` label
/// (docs/contract.md), so a pod turning ready or going away reconciles its cluster at once.
pub fn cluster_of_pod(pod: &Pod) -> Option<ObjectRef<SessionCluster>> {
    let labels = pod.labels();
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(LABEL_MANAGED_BY_VALUE) {
        return None;
    }
    let instance = labels.get(LABEL_INSTANCE)?;
    Some(ObjectRef::new(instance).within(&pod.namespace()?))
}

/// Decides the StatefulSet's replicas. While scaling down, asks each leaving node to leave and
/// keeps the old count until every leaving node reports `left` (or is gone), or until
/// `leave_timeout` passed.
async fn scale_down_step(
    cluster: &SessionCluster,
    ctx: &Context,
    validated: &ValidatedCluster,
    current: i32,
    pods: &[Pod],
    old: &SessionClusterStatus,
) -> Result<(i32, Option<ScaleDownStatus>), Error> {
    let desired = validated.replicas;
    if desired >= current {
        return Ok((desired, None));
    }
    let leaving: Vec<String> = (desired..current)
        .map(|i| naming::pod(&validated.name, i))
        .collect();
    let previous = old
        .scale_down
        .clone()
        .filter(|s| s.target_replicas == desired && s.leaving == leaving);
    let password = match &validated.auth {
        Some(auth) => {
            Some(read_password(ctx, &validated.namespace, &auth.secret, &auth.key).await?)
        }
        None => None,
    };
    let mut pending = Vec::new();
    for pod_name in &leaving {
        let Some(ip) = pods
            .iter()
            .find(|p| p.name_any() == *pod_name)
            .and_then(pod_ip)
        else {
            continue;
        };
        let address = http_address(&ip);
        let state = match ctx.node_api.status(address.clone()).await {
            Ok(node) => node.state,
            // A node that does not answer serves no client either.
            Err(_) => continue,
        };
        if state == "left" {
            continue;
        }
        if state != "leaving" {
            if let Err(error) = ctx.node_api.leave(address, password.clone()).await {
                tracing::warn!(cluster = %key(cluster), node = %pod_name, %error, "leave request failed");
            } else {
                tracing::info!(cluster = %key(cluster), node = %pod_name, "asked node to leave");
            }
        }
        pending.push(pod_name.clone());
    }
    let started_at = previous
        .as_ref()
        .map(|p| p.started_at.clone())
        .unwrap_or_else(|| now().0.to_string());
    if previous.is_none() && !pending.is_empty() {
        ctx.publish(
            cluster,
            false,
            reason::SCALING_DOWN,
            format!(
                "asked {} to leave before scaling from {current} to {desired}",
                pending.join(", ")
            ),
        )
        .await;
    }
    if pending.is_empty() {
        return Ok((desired, None));
    }
    let elapsed = started_at
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .and_then(|t| {
            k8s_openapi::jiff::Timestamp::now()
                .duration_since(t)
                .try_into()
                .ok()
        })
        .unwrap_or(Duration::ZERO);
    if elapsed >= ctx.config.leave_timeout {
        ctx.publish(
            cluster,
            true,
            reason::LEAVE_TIMEOUT,
            format!(
                "{} did not confirm leaving within {}s; scaling down anyway",
                pending.join(", "),
                ctx.config.leave_timeout.as_secs()
            ),
        )
        .await;
        return Ok((desired, None));
    }
    Ok((
        current,
        Some(ScaleDownStatus {
            target_replicas: desired,
            leaving,
            started_at,
        }),
    ))
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

async fn read_password(
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
        .list(&ListParams::default().labels(&naming::selector_string(&validated.name)))
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

async fn crd_exists(ctx: &Context, name: &str) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

/// ServiceMonitor and PrometheusRule when `monitoring.enabled` and their CRDs exist.
async fn monitoring(
    cluster: &SessionCluster,
    ctx: &Context,
    applier: &Applier,
    validated: &ValidatedCluster,
) -> Result<(), Error> {
    let objects = [
        (
            "servicemonitors.monitoring.coreos.com",
            resources::service_monitor_resource(),
            resources::build_service_monitor(validated),
        ),
        (
            "prometheusrules.monitoring.coreos.com",
            resources::prometheus_rule_resource(),
            resources::build_prometheus_rule(validated),
        ),
    ];
    if !validated.spec.monitoring.enabled {
        // Delete what an earlier `enabled: true` made, once per disable (and once per cluster
        // after the operator starts), not on every poll: two reads per cluster and minute for
        // objects that almost never exist.
        let first = ctx
            .monitoring_cleaned
            .lock()
            .map(|mut cleaned| cleaned.insert(key(cluster)))
            .unwrap_or(true);
        if first {
            for (_, resource, object) in &objects {
                let name = object.name_any();
                match applier
                    .delete_owned_dynamic(&name, &validated.owner.uid, resource)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(cluster = %key(cluster), kind = %resource.kind, "deleted; monitoring disabled")
                    }
                    Ok(false) => {}
                    // Without the CRD the kind does not exist: nothing to delete.
                    Err(ApplyError::Read {
                        source: kube::Error::Api(status),
                        ..
                    }) if status.code == 404 => {}
                    Err(error) => {
                        if let Ok(mut cleaned) = ctx.monitoring_cleaned.lock() {
                            cleaned.remove(&key(cluster));
                        }
                        return Err(error.into());
                    }
                }
            }
        }
        return Ok(());
    }
    if let Ok(mut cleaned) = ctx.monitoring_cleaned.lock() {
        cleaned.remove(&key(cluster));
    }
    let mut missing = Vec::new();
    for (crd, resource, object) in objects {
        if crd_exists(ctx, crd).await {
            applier.apply_dynamic(&object, &resource).await?;
        } else {
            let first = ctx
                .monitoring_warned
                .lock()
                .map(|mut warned| warned.insert(format!("{}/{crd}", key(cluster))))
                .unwrap_or(false);
            if first {
                missing.push(crd);
            }
        }
    }
    // One event: the recorder folds events of the same reason into one series that keeps the
    // first note, so a second event would lose its CRD's name.
    if !missing.is_empty() {
        ctx.publish(
            cluster,
            true,
            "MonitoringUnavailable",
            format!(
                "monitoring.enabled is true but {} not installed; install the Prometheus Operator or set monitoring.enabled: false",
                match missing.as_slice() {
                    [one] => format!("the CRD {one} is"),
                    more => format!("the CRDs {} are", more.join(" and ")),
                }
            ),
        )
        .await;
    }
    Ok(())
}

/// Polls `/v1/status` of every ready pod below `replicas`; nodes that do not answer are left out.
async fn poll_members(ctx: &Context, pods: &[Pod], name: &str, replicas: i32) -> Vec<NodeStatus> {
    let calls = pods
        .iter()
        .filter(|pod| pod_is_ready(pod))
        .filter(|pod| naming::ordinal_of(name, &pod.name_any()).is_some_and(|o| o < replicas))
        .filter_map(pod_ip)
        .map(|ip| ctx.node_api.status(http_address(&ip)));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(|result| match result {
            Ok(status) => Some(status),
            Err(error) => {
                tracing::debug!(cluster = %name, %error, "status poll failed");
                None
            }
        })
        .collect()
}

/// Sets the gauges of every polled node and removes those of nodes a scale-down removed (a node
/// that merely did not answer this time keeps its last value).
fn record_member_metrics(
    ctx: &Context,
    namespace: &str,
    name: &str,
    replicas: i32,
    members: &[NodeStatus],
) {
    for member in members {
        ctx.metrics.set_node_memory(
            namespace,
            name,
            &member.node_name,
            member.memory.used_bytes,
            member.memory.limit_bytes,
            member.memory.alarm,
        );
    }
    ctx.metrics.retain_nodes(namespace, name, |node| {
        naming::ordinal_of(name, node).is_some_and(|ordinal| ordinal < replicas)
    });
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

/// What the controller reports after each reconcile it scheduled.
pub type Outcome = Result<
    (ObjectRef<SessionCluster>, Action),
    kube::runtime::controller::Error<Error, watcher::Error>,
>;

/// Acts on a controller outcome. Without a finalizer a deletion is never reconciled; it shows as
/// a reconcile of a cluster that is no longer there (its requeue, or its children and pods being
/// garbage collected), which is when the operator forgets the cluster's gauges and counters.
pub fn handle_outcome(ctx: &Context, outcome: Outcome) {
    match outcome {
        Ok(_) => {}
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            if let Some(namespace) = &object.namespace {
                tracing::debug!(cluster = %format!("{namespace}/{}", object.name), "deleted; forgetting it");
                ctx.forget(namespace, &object.name);
            }
        }
        Err(error) => tracing::debug!(%error, "controller event"),
    }
}

/// The SessionClusters whose pods mount `secret`: those naming it in `auth.secretRef`, and the
/// one it was generated for (`<name>-auth`). A change to it reconciles them, which rolls their
/// pods when the password changed.
pub fn clusters_using_secret(
    clusters: &[Arc<SessionCluster>],
    secret: &Secret,
) -> Vec<ObjectRef<SessionCluster>> {
    let (Some(namespace), Some(secret_name)) = (secret.namespace(), secret.metadata.name.as_ref())
    else {
        return Vec::new();
    };
    clusters
        .iter()
        .filter(|cluster| cluster.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|cluster| cluster.spec.auth.enabled)
        .filter(|cluster| match &cluster.spec.auth.secret_ref {
            Some(reference) => reference.name == *secret_name,
            None => naming::auth_secret(&cluster.name_any()) == *secret_name,
        })
        .map(|cluster| ObjectRef::from_obj(cluster.as_ref()))
        .collect()
}

/// Secrets the operator watches: all but Helm release and service-account token Secrets, which
/// never hold a password a SessionCluster mounts (Helm's are large and change on every upgrade).
pub const SECRET_WATCH_FIELDS: &str =
    "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";

/// Runs the controller until `shutdown` completes. `namespaces` empty means all namespaces.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let runs = scopes.into_iter().map(|namespace| {
        let ctx = ctx.clone();
        let client = ctx.client.clone();
        let shutdown = shutdown.clone();
        async move {
            fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
            where
                K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
            {
                match namespace {
                    Some(ns) => Api::namespaced(client.clone(), ns),
                    None => Api::all(client.clone()),
                }
            }
            let owned = watcher::Config::default().labels(&naming::managed_selector());
            let pods = watcher::Config::default().labels(&naming::pod_watch_selector());
            let secrets = watcher::Config::default().fields(SECRET_WATCH_FIELDS);
            let controller = Controller::new(
                api::<SessionCluster>(&client, &namespace),
                watcher::Config::default(),
            );
            let clusters = controller.store();
            controller
                .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
                .owns(api::<Service>(&client, &namespace), owned.clone())
                .owns(api::<ConfigMap>(&client, &namespace), owned.clone())
                // Referenced Secrets are the user's, without our labels or owner reference.
                .watches(api::<Secret>(&client, &namespace), secrets, move |secret| {
                    clusters_using_secret(&clusters.state(), &secret)
                })
                .owns(api::<ServiceAccount>(&client, &namespace), owned.clone())
                .owns(
                    api::<PodDisruptionBudget>(&client, &namespace),
                    owned.clone(),
                )
                .owns(api::<NetworkPolicy>(&client, &namespace), owned)
                .watches(api::<Pod>(&client, &namespace), pods, |pod| {
                    cluster_of_pod(&pod)
                })
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|outcome| {
                    handle_outcome(&ctx, outcome);
                    std::future::ready(())
                })
                .await;
        }
    });
    futures::future::join_all(runs).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_failure(code: u16, message: &str) -> Error {
        Error::Apply(ApplyError::Apply {
            kind: "ConfigMap".into(),
            name: "web-config".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure(message, "Forbidden").with_code(code),
            )),
        })
    }

    #[test]
    fn writes_refused_by_a_terminating_namespace_are_not_failures() {
        let terminating = api_failure(
            403,
            "configmaps \"web-config\" is forbidden: unable to create new content in namespace e2e because it is being terminated",
        );
        assert!(terminating.namespace_gone());
        assert_eq!(terminating.category(), "namespace_deleted");
        assert!(api_failure(404, "namespaces \"e2e\" not found").namespace_gone());
        let rbac = api_failure(403, "configmaps is forbidden: User cannot patch resource");
        assert!(!rbac.namespace_gone());
        assert_eq!(rbac.category(), "api");
    }
}
