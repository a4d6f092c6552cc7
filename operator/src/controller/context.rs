//! What every reconcile shares: the API client, the node client, the event recorder, the
//! settings, the metrics, the member watch, and the per-cluster counters the steps keep between
//! reconciles.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use sessionstore_api::SessionCluster;

use super::member_watch::MemberWatch;
use crate::metrics::Metrics;
use crate::node_client::NodeApi;

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
    /// How often the member watch polls the nodes of a cluster that is changing (a pod not
    /// ready, a rollout, a node in alarm or near its high watermark).
    pub member_poll_fast: Duration,
    /// How often the member watch polls the nodes of a steady cluster.
    pub member_poll_slow: Duration,
    /// The namespace the operator runs in: the NetworkPolicy admits it to the HTTP port.
    pub operator_namespace: String,
    /// Where generated passwords, peer keys and tokens come from: the kernel's random source.
    /// When it cannot be read nothing is generated and `Degraded` says `RandomnessUnavailable`.
    pub random_source: PathBuf,
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
            member_poll_fast: Duration::from_secs(2),
            member_poll_slow: Duration::from_secs(5),
            operator_namespace: "sessionstore-system".to_owned(),
            random_source: PathBuf::from("/dev/urandom"),
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
    /// Polls the nodes between reconciles and triggers one when they change.
    pub member_watch: MemberWatch,
    /// Consecutive failures per cluster, for the backoff.
    pub(super) failures: Mutex<HashMap<String, u32>>,
    /// Consecutive polls per cluster that found the members not all synced.
    pub(super) unsynced_polls: Mutex<HashMap<String, u32>>,
    /// Clusters already told that the monitoring CRDs are missing.
    pub(super) monitoring_warned: Mutex<HashSet<String>>,
    /// Clusters with monitoring disabled whose leftover monitoring objects were deleted.
    pub(super) monitoring_cleaned: Mutex<HashSet<String>>,
    /// Per cluster, the store-node container restarts of each pod (by uid) at the last look,
    /// to tell a new OOM kill from one already reported.
    pub(super) restarts: Mutex<HashMap<String, HashMap<String, i32>>>,
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
        let member_watch = MemberWatch::new(config.member_poll_fast, config.member_poll_slow);
        Self {
            client,
            node_api,
            recorder,
            config,
            metrics,
            member_watch,
            failures: Mutex::default(),
            unsynced_polls: Mutex::default(),
            monitoring_warned: Mutex::default(),
            monitoring_cleaned: Mutex::default(),
            restarts: Mutex::default(),
        }
    }

    /// Drops what the operator keeps about a deleted cluster: its node gauges, its backoff and
    /// unsynced-poll counts, its "monitoring CRDs missing" notes, its pods' restart counts and
    /// its place in the member watch.
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
        if let Ok(mut restarts) = self.restarts.lock() {
            restarts.remove(&cluster);
        }
        self.member_watch.forget(&cluster);
    }

    /// Publishes an event on `cluster`; a failure is logged, never returned: an event is a
    /// notice, not part of the reconcile.
    pub(super) async fn publish(
        &self,
        cluster: &SessionCluster,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.publish_related(cluster, warning, reason, note, None)
            .await;
    }

    /// [`Self::publish`], naming the object the event is also about (a pod). The recorder folds
    /// events with the same reason about the same objects into one series whose note is the
    /// first one's, so an event about one pod must name it here to stay apart from another's.
    pub(super) async fn publish_related(
        &self,
        cluster: &SessionCluster,
        warning: bool,
        reason: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: related,
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

/// The current time, as conditions and the scale-down record it.
pub(super) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// `namespace/name` of a cluster: the key of the per-cluster counters and of log lines.
pub(super) fn key(cluster: &SessionCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}
