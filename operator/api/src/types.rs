//! The SessionCluster custom resource: spec, status and their defaults. Every `///` here is what
//! `kubectl explain sessioncluster` prints, so it is written for the person writing a manifest.

// Several `printcolumn(type_ = "string", ...)` attributes are not duplicates, whatever clippy
// reads into the derive's attribute list.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;
pub use crate::security::{
    AuthSpec, LocalSecretRef, NetworkPolicySpec, SecretKeyRef, TlsSpec, TlsStatus, UserRole,
    UserSpec,
};

/// Go-style duration accepted by duration fields, e.g. `30m`, `1h30m`, `45s`, `100ms`.
pub const DURATION_PATTERN: &str = crate::rules::DURATION_REGEX;

/// A replicated session store: a StatefulSet of store-node pods that replicate every session to
/// every node, reachable through one client Service with any Redis client or the HTTP session API.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sessionstore.dev",
    version = "v1alpha1",
    kind = "SessionCluster",
    plural = "sessionclusters",
    shortname = "scl",
    category = "sessionstore",
    namespaced,
    status = "SessionClusterStatus",
    derive = "PartialEq",
    doc = "A replicated, Redis-compatible session store managed by the sessionstore operator",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Ready nodes / desired nodes"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.storage.mode",
        description = "ram or disc"
    ),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".status.memory",
        description = "Highest node's memory used / limit"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SessionClusterSpec {
    /// Number of store-node pods, from 1 to 99; default 3. Every node holds every session, so
    /// more nodes add read capacity and survive more failures, not more space. Scaling down
    /// first asks each leaving node to hand off and leave. Works with `kubectl scale` and a
    /// HorizontalPodAutoscaler.
    #[serde(default = "default_replicas")]
    // CEL rules rather than `minimum`/`maximum` (see `rules`), one per bound, so that
    // `kubectl scale --replicas 1000` is told about the maximum and `--replicas 0` about zero.
    #[x_kube(validation = Rule::new(rules::REPLICAS_MIN_RULE).message(rules::REPLICAS_MIN_MESSAGE).reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(rules::REPLICAS_MAX_RULE).message(rules::REPLICAS_MAX_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub replicas: i32,

    /// Container image of store-node. Defaults to the image the operator was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy of the store-node container: `Always`, `IfNotPresent` or `Never`.
    /// Defaults to Kubernetes' rule (`Always` for `:latest`, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Where sessions live: in memory only (`ram`) or in memory plus a volume per node (`disc`).
    #[serde(default)]
    pub storage: StorageSpec,

    /// Session idle timeouts and expiry.
    #[serde(default)]
    pub sessions: SessionsSpec,

    /// How writes are replicated.
    #[serde(default)]
    pub replication: ReplicationSpec,

    /// Memory alarms. The limit itself is `resources.limits.memory`.
    #[serde(default)]
    pub memory: MemorySpec,

    /// CPU and memory of each store-node container. `limits.memory` is the node's memory
    /// limit, a quantity string of at least `64Mi`: watermarks are fractions of it. `limits`
    /// takes `cpu`, `memory` and `ephemeral-storage`. Defaults to requests cpu 100m / memory
    /// 256Mi and a memory limit of 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    #[x_kube(validation = Rule::new(rules::MEMORY_QUANTITY_RULE).message(rules::MEMORY_QUANTITY_MESSAGE).reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(rules::MEMORY_FLOOR_RULE).message(rules::MEMORY_FLOOR_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub resources: Option<ResourceRequirements>,

    /// Pod affinity rules, passed to the pods as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Pod tolerations, passed to the pods as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node selector, passed to the pods as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Topology spread constraints, passed to the pods as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Extra labels on the pods. The operator's own `app.kubernetes.io/*` labels win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// The client Service applications connect to.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Client authentication.
    #[serde(default)]
    pub auth: AuthSpec,

    /// TLS on the Redis, HTTP and peer ports (docs/security.md).
    #[serde(default)]
    pub tls: TlsSpec,

    /// Prometheus Operator objects (ServiceMonitor, PrometheusRule).
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// A NetworkPolicy limiting who may reach the nodes.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// Bound on a node's graceful shutdown (flush replication, fsync, exit), from `1s` to `10m`;
    /// default `20s`. The pod's terminationGracePeriodSeconds is set 10 seconds above it.
    #[serde(default = "default_shutdown_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::SHUTDOWN_TIMEOUT_DURATION_MESSAGE).reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(rules::SHUTDOWN_TIMEOUT_RANGE_RULE).message(rules::SHUTDOWN_TIMEOUT_RANGE_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub shutdown_timeout: String,

    /// Seconds a rollout or a scaling may go without progress (a node created, updated or
    /// turned ready) before `Progressing` turns `False` with reason `ProgressDeadlineExceeded`,
    /// as for a Deployment; at least 10, default 600.
    #[serde(default = "default_progress_deadline_seconds")]
    #[x_kube(validation = Rule::new(rules::PROGRESS_DEADLINE_RULE).message(rules::PROGRESS_DEADLINE_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub progress_deadline_seconds: i32,

    /// Stop reconciling: the operator changes nothing (not even scaling) until this is false
    /// again, and reports the `Paused` condition. Use it for maintenance.
    #[serde(default)]
    pub paused: bool,

    /// Keyspace notifications, as Redis's `notify-keyspace-events` letters (e.g. `Egx`: events
    /// of generic commands and expiries on `__keyevent@0__:<event>`, what Spring Session's
    /// indexed repository needs). Empty or absent (the default): none. Changing it rolls the
    /// nodes one at a time, like every node setting; `CONFIG SET notify-keyspace-events`
    /// changes one node until its next restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(rules::NOTIFY_KEYSPACE_EVENTS_RULE).message(rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE).reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_RULE).message(rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub notify_keyspace_events: Option<String>,

    /// Set to any new value (typically the current time, like `kubectl rollout restart`) to
    /// restart every node, one at a time, each after the previous one is synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

/// Image pull policy of the store-node container: `Always`, `IfNotPresent` or `Never`.
/// Defaults to Kubernetes' rule (`Always` for `:latest`, else `IfNotPresent`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is missing on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Storage of the sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == oldSelf.mode").message("storage.mode is immutable: ram nodes keep sessions only in memory while disc nodes each own a PersistentVolumeClaim, and a StatefulSet cannot add or remove volumes. To migrate, create a new SessionCluster with the other mode, move clients to its Service, then delete this one").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("self.mode != 'disc' || has(self.size)").message("storage.size is required when storage.mode is disc: set the size of each node's volume, e.g. size: 1Gi").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.size) || !has(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0").message("storage.size may grow but not shrink: Kubernetes cannot shrink a PersistentVolumeClaim. Keep the old size, or create a new SessionCluster with the smaller size and move clients to it").reason(Reason::FieldValueForbidden))]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storage.storageClassName is immutable: existing volumes cannot move to another StorageClass. Create a new SessionCluster to use another class").reason(Reason::FieldValueForbidden))]
pub struct StorageSpec {
    /// `ram`: sessions live in memory only; a restarted node re-syncs from its peers, and
    /// sessions are lost if every node restarts at once. `disc`: every node also persists to its
    /// own PersistentVolumeClaim and the cluster survives a full restart. Immutable.
    #[serde(default)]
    pub mode: StorageMode,

    /// Size of each node's volume in disc mode: a Kubernetes quantity written as a string,
    /// e.g. `1Gi`, `500Mi` or `10G`. Required in disc mode. May grow (the operator expands the
    /// claims; the StorageClass must allow volume expansion), never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_string_schema")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("storage.size must be a Kubernetes quantity such as 1Gi, 500Mi or 10G").reason(Reason::FieldValueInvalid))]
    pub size: Option<Quantity>,

    /// StorageClass of the volumes in disc mode. Defaults to the cluster's default class.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// Disc mode fsync policy: `always` (an acknowledged write survives `kill -9`) or
    /// `everysec` (at most about a second of writes lost on a crash, much faster).
    #[serde(default)]
    pub fsync: FsyncPolicy,

    /// What happens to the volume claims of disc-mode nodes. Defaults keep them on scale-down
    /// (a later scale-up reuses them) and on deletion of the SessionCluster.
    #[serde(default)]
    pub retention: RetentionSpec,
}

/// Storage mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// Memory only.
    #[default]
    Ram,
    /// Memory plus a PersistentVolumeClaim per node.
    Disc,
}

impl StorageMode {
    /// The spelling used in the spec and in store-node's `--storage-mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ram => "ram",
            Self::Disc => "disc",
        }
    }
}

/// Fsync policy of the write-ahead log.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync before acknowledging every write.
    Always,
    /// fsync once a second.
    #[default]
    Everysec,
}

impl FsyncPolicy {
    /// The spelling of store-node's `--fsync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Everysec => "everysec",
        }
    }
}

/// Retention of disc-mode volume claims (the StatefulSet's persistentVolumeClaimRetentionPolicy).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// `Retain` (default): the claims of nodes removed by a scale-down are kept and reused by a
    /// later scale-up. `Delete`: they are deleted with the pods.
    #[serde(default)]
    pub when_scaled: RetentionPolicy,
    /// `Retain` (default): the claims outlive the SessionCluster (delete them by hand).
    /// `Delete`: they are deleted with it.
    #[serde(default)]
    pub when_deleted: RetentionPolicy,
}

/// Keep or delete.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RetentionPolicy {
    /// Keep the claims.
    #[default]
    Retain,
    /// Delete the claims.
    Delete,
}

impl RetentionPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// Session timeouts. Durations are Go-style (`30m`, `1h30m`, `45s`) and whole seconds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::MAX_TIMEOUT_ORDER_RULE).message(rules::MAX_TIMEOUT_ORDER_MESSAGE).reason(Reason::FieldValueInvalid))]
pub struct SessionsSpec {
    /// Idle timeout of a session created through the HTTP API without one, e.g. `30m`; at
    /// least `1s`, default `30m`. Reading a session slides its expiry.
    #[serde(default = "default_session_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::DEFAULT_TIMEOUT_DURATION_MESSAGE).reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(rules::DEFAULT_TIMEOUT_MIN_RULE).message(rules::DEFAULT_TIMEOUT_MIN_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub default_timeout: String,

    /// Largest idle timeout a client may ask for, e.g. `24h` (the default).
    #[serde(default = "default_max_session_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::MAX_TIMEOUT_DURATION_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub max_timeout: String,

    /// How often each node sweeps expired keys, from `10ms` to `1m`; default `100ms`.
    #[serde(default = "default_cleanup_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::CLEANUP_INTERVAL_DURATION_MESSAGE).reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(rules::CLEANUP_INTERVAL_RANGE_RULE).message(rules::CLEANUP_INTERVAL_RANGE_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub cleanup_interval: String,
}

impl Default for SessionsSpec {
    fn default() -> Self {
        Self {
            default_timeout: default_session_timeout(),
            max_timeout: default_max_session_timeout(),
            cleanup_interval: default_cleanup_interval(),
        }
    }
}

/// Replication of writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// How many peers must hold a write before the client gets OK: `none` (fastest, a crash
    /// right after may lose it), `one` (default) or `all` (slowest; a missing peer stalls writes
    /// until it is dropped).
    #[serde(default)]
    pub write_ack: WriteAck,
}

/// Write acknowledgement level.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteAck {
    /// Do not wait for peers.
    None,
    /// Wait for one peer.
    #[default]
    One,
    /// Wait for every peer.
    All,
}

impl WriteAck {
    /// The spelling of store-node's `--write-ack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::One => "one",
            Self::All => "all",
        }
    }
}

/// Memory watermarks, as fractions of `resources.limits.memory`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(rules::WATERMARK_ORDER_RULE).message(rules::WATERMARK_ORDER_MESSAGE).reason(Reason::FieldValueInvalid))]
pub struct MemorySpec {
    /// Above this fraction of the memory limit a node refuses writes that grow memory with
    /// Redis's `OOM` error (or evicts, per evictionPolicy) and raises its alarm. Above 0 and at
    /// most 0.95; default 0.8.
    #[serde(default = "default_high_watermark")]
    #[x_kube(validation = Rule::new(rules::HIGH_WATERMARK_RULE).message(rules::HIGH_WATERMARK_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub high_watermark: f64,

    /// The alarm clears when memory falls below this fraction. Above 0 and below
    /// highWatermark; default 0.7.
    #[serde(default = "default_low_watermark")]
    #[x_kube(validation = Rule::new(rules::LOW_WATERMARK_RULE).message(rules::LOW_WATERMARK_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub low_watermark: f64,

    /// What to do above the high watermark: `noeviction` (refuse writes, default),
    /// `volatile-ttl` (evict the keys nearest to expiry), `volatile-lru` (evict the least
    /// recently used keys that have an expiry).
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
}

impl Default for MemorySpec {
    fn default() -> Self {
        Self {
            high_watermark: default_high_watermark(),
            low_watermark: default_low_watermark(),
            eviction_policy: EvictionPolicy::default(),
        }
    }
}

/// Eviction policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EvictionPolicy {
    /// Refuse growth writes.
    #[default]
    #[serde(rename = "noeviction")]
    NoEviction,
    /// Evict keys with the nearest expiry.
    #[serde(rename = "volatile-ttl")]
    VolatileTtl,
    /// Evict least recently used keys with an expiry.
    #[serde(rename = "volatile-lru")]
    VolatileLru,
}

impl EvictionPolicy {
    /// The spelling of store-node's `--eviction-policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoEviction => "noeviction",
            Self::VolatileTtl => "volatile-ttl",
            Self::VolatileLru => "volatile-lru",
        }
    }
}

/// The client Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port for Redis clients (the container always listens on 6379).
    #[serde(default = "default_resp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Service port of the HTTP session API (the container always listens on 8080).
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http_port: i32,
    /// Annotations on the client Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_resp_port(),
            http_port: default_http_port(),
            annotations: None,
        }
    }
}

/// Service type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Prometheus Operator integration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor scraping every node and a PrometheusRule with memory alerts
    /// (warning above the high watermark, critical above 95% of the limit). Only when the
    /// Prometheus Operator CRDs exist; otherwise the operator says so in an event.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, e.g. `30s` (the default).
    #[serde(default = "default_scrape_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::MONITORING_INTERVAL_DURATION_MESSAGE).reason(Reason::FieldValueInvalid))]
    pub interval: String,
    /// Extra labels on the ServiceMonitor and PrometheusRule (e.g. what your Prometheus selects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_scrape_interval(),
            labels: None,
        }
    }
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready (synced with their peers).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the current template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// The highest node's memory used / limit in percent, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Label selector of the pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What each ready node reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// A scale-down in progress: nodes asked to leave and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDownStatus>,
    /// When a rollout or a scaling last made progress (a node created, updated or turned ready),
    /// RFC 3339. With `spec.progressDeadlineSeconds` it decides `ProgressDeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<String>,
    /// What the operator remembers of the data the nodes hold, to tell when the cluster lost
    /// every session (every node restarted with nothing to recover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataStatus>,
    /// The node certificate, when TLS is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// Available, Progressing, Degraded, Clustered, MemoryPressure, ReconcileSuccess, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One node as it reports itself on `/v1/status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Pod name.
    pub name: String,
    /// The node's process id: a restarted node reports a new one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    /// `loading`, `ready`, `leaving` or `left`.
    pub state: String,
    /// How the node got the data it started serving with: `empty` (nothing to copy: the first
    /// node of a new cluster, or every node restarted at once in RAM mode), `peer` (a snapshot
    /// from another node) or `disc` (recovered from its volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_origin: Option<String>,
    /// Keys held.
    #[serde(default)]
    pub keys: u64,
    /// Peers this node is connected to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Pods of the cluster this node does not see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_peers: Vec<String>,
    /// Largest replication lag to a peer, in operations.
    #[serde(default)]
    pub max_lag_ops: u64,
    /// Bytes used.
    #[serde(default)]
    pub memory_used_bytes: u64,
    /// Memory limit in bytes.
    #[serde(default)]
    pub memory_limit_bytes: u64,
    /// True while the node is above its high watermark.
    #[serde(default)]
    pub memory_alarm: bool,
}

/// What the operator remembers of the cluster's data between polls.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStatus {
    /// Process ids (`members[].nodeId`) of the nodes that held keys at the last poll where any
    /// node reported. When every node later reports a new process that started empty, the
    /// sessions they held are lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_by: Vec<String>,
    /// The most keys one of those nodes held.
    #[serde(default)]
    pub keys: u64,
    /// When the operator found every node restarted with nothing to recover (RFC 3339): the
    /// sessions held before were lost (`SessionsLost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_at: Option<String>,
    /// Keys held before that loss.
    #[serde(default)]
    pub lost_keys: u64,
}

/// A scale-down in progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownStatus {
    /// The replica count being scaled down to.
    pub target_replicas: i32,
    /// Pods asked to leave.
    pub leaving: Vec<String>,
    /// When the first leave request was sent (RFC 3339).
    pub started_at: String,
}

/// The schema of `resources`: Kubernetes' ResourceRequirements, except that `limits` names its
/// keys and `limits.memory` is a string of at most 64 characters. The API server prices a CEL
/// rule on a value whose size it cannot bound (a map value, an int-or-string) at its largest
/// request size, far above its budget, and the memory floor needs a rule on that value.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantity = |description: &str| serde_json::json!({"description": description, "x-kubernetes-int-or-string": true});
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "limits": {
                "description": "The container's limits.",
                "type": "object",
                "properties": {
                    "memory": {
                        "description": "The node's memory limit, a quantity written as a string such as `256Mi` or `1Gi`, at least `64Mi`: the watermarks are fractions of it, and store-node takes it as `--max-memory`.",
                        "type": "string",
                        "maxLength": 64
                    },
                    "cpu": quantity("CPU limit, e.g. `1` or `500m`."),
                    "ephemeral-storage": quantity("Ephemeral storage limit, e.g. `1Gi`.")
                }
            },
            "requests": {
                "description": "What the scheduler reserves for the container, e.g. `cpu: 100m` and `memory: 256Mi`.",
                "type": "object",
                "additionalProperties": quantity("A quantity, e.g. `100m` or `256Mi`.")
            }
        }
    });
    schemars::Schema::try_from(schema).unwrap_or_default()
}

/// A quantity as a plain string. k8s-openapi's own Quantity schema is int-or-string, which has no
/// `type`, and `kubectl explain` prints a field without a type as `<Object>`; a size is always
/// written with a unit anyway. The length bound keeps the CEL rules on it cheap to estimate.
fn quantity_string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "maxLength": 64})
}

fn default_replicas() -> i32 {
    3
}
fn default_session_timeout() -> String {
    "30m".to_owned()
}
fn default_max_session_timeout() -> String {
    "24h".to_owned()
}
fn default_cleanup_interval() -> String {
    "100ms".to_owned()
}
fn default_shutdown_timeout() -> String {
    "20s".to_owned()
}
fn default_progress_deadline_seconds() -> i32 {
    600
}
fn default_high_watermark() -> f64 {
    0.8
}
fn default_low_watermark() -> f64 {
    0.7
}
fn default_resp_port() -> i32 {
    crate::constants::RESP_PORT
}
fn default_http_port() -> i32 {
    crate::constants::HTTP_PORT
}
fn default_scrape_interval() -> String {
    "30s".to_owned()
}
