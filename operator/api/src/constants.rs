//! Names shared by the operator, the chart and the e2e suite: API group, label and annotation
//! keys, condition types and reasons, and store-node ports. See docs/contract.md.

/// API group of the SessionCluster resource.
pub const GROUP: &str = "sessionstore.dev";
/// API version of the SessionCluster resource.
pub const VERSION: &str = "v1alpha1";
/// The field manager every server-side apply of the operator uses.
pub const FIELD_MANAGER: &str = "sessionstore-operator";

/// `app.kubernetes.io/name` label key.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance` label key: the SessionCluster name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by` label key.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/component` label key.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// The label a StatefulSet puts on each pod: the revision of the template it was made from.
pub const LABEL_CONTROLLER_REVISION: &str = "controller-revision-hash";
/// Value of the `name` label on every object of a cluster.
pub const LABEL_NAME_VALUE: &str = "store-node";
/// Value of the `managed-by` label.
pub const LABEL_MANAGED_BY_VALUE: &str = "sessionstore-operator";
/// Value of the `component` label.
pub const LABEL_COMPONENT_VALUE: &str = "session-store";

/// Pod template annotation holding the SHA-256 of the ConfigMap data; a change rolls the pods.
pub const ANNOTATION_CONFIG_HASH: &str = "sessionstore.dev/config-hash";
/// Pod template annotation copied from `spec.restartedAt`; a change rolls the pods.
pub const ANNOTATION_RESTARTED_AT: &str = "sessionstore.dev/restartedAt";

/// store-node's Redis protocol port.
pub const RESP_PORT: i32 = 6379;
/// store-node's HTTP port (session API, probes, status, metrics).
pub const HTTP_PORT: i32 = 8080;
/// store-node's peer replication port.
pub const PEER_PORT: i32 = 7379;
/// Name of the RESP port on the container and the client Service.
pub const RESP_PORT_NAME: &str = "resp";
/// Name of the HTTP port on the container and the client Service.
pub const HTTP_PORT_NAME: &str = "http";
/// Name of the peer port on the container and the headless Service.
pub const PEER_PORT_NAME: &str = "peer";
/// Key of the password in the auth Secret.
pub const PASSWORD_KEY: &str = "password";
/// Key of the peer key in `<name>-peer-key`.
pub const PEER_KEY_KEY: &str = "key";
/// Key of the token in `<name>-operator-token`.
pub const OPERATOR_TOKEN_KEY: &str = "token";
/// Keys of a TLS Secret in cert-manager's layout.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The private key of `tls.crt`.
pub const TLS_KEY_KEY: &str = "tls.key";
/// The CA certificate clients and peers trust.
pub const TLS_CA_KEY: &str = "ca.crt";
/// Pod template annotation naming the revision of the node password Secret the pods run with
/// (the auth Secret's uid and resourceVersion when its password was read): a new password
/// rolls the pods, and the annotation tells nothing about the password.
pub const ANNOTATION_AUTH_REVISION: &str = "sessionstore.dev/auth-revision";
/// Clock skew (ms) beyond which a node stamps writes by its peers' majority time, and the
/// operator reports the node in `Degraded` with reason `ClockSkew` (docs/replication.md, the
/// clock rule).
pub const CLOCK_SKEW_THRESHOLD_MS: u64 = 500;

/// Condition types reported in `status.conditions`.
pub mod condition {
    /// The client Service has ready endpoints and a quorum of nodes is ready.
    pub const AVAILABLE: &str = "Available";
    /// A rollout or a scaling is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Fewer nodes are ready than asked for, or a change was refused.
    pub const DEGRADED: &str = "Degraded";
    /// Every node sees every other node as a connected peer.
    pub const CLUSTERED: &str = "Clustered";
    /// Some node is above its memory high watermark.
    pub const MEMORY_PRESSURE: &str = "MemoryPressure";
    /// The last reconcile applied the spec without error.
    pub const RECONCILE_SUCCESS: &str = "ReconcileSuccess";
    /// `spec.paused` is true: the operator changes nothing.
    pub const PAUSED: &str = "Paused";
}

/// Condition reasons (also used as event reasons).
pub mod reason {
    /// All nodes ready.
    pub const ALL_NODES_READY: &str = "AllNodesReady";
    /// A quorum of nodes is ready, not all.
    pub const QUORUM_READY: &str = "QuorumReady";
    /// Less than a quorum of nodes is ready.
    pub const QUORUM_LOST: &str = "QuorumLost";
    /// Pods are being created or started.
    pub const NODES_STARTING: &str = "NodesStarting";
    /// Pods are being replaced with a new template.
    pub const ROLLING_UPDATE: &str = "RollingUpdate";
    /// More nodes are being added.
    pub const SCALING_UP: &str = "ScalingUp";
    /// Nodes are leaving before the StatefulSet is lowered.
    pub const SCALING_DOWN: &str = "ScalingDown";
    /// Everything matches the spec.
    pub const UP_TO_DATE: &str = "UpToDate";
    /// Some nodes are not ready.
    pub const NODES_NOT_READY: &str = "NodesNotReady";
    /// Everything is healthy.
    pub const HEALTHY: &str = "Healthy";
    /// Every node sees every other node.
    pub const ALL_PEERS_CONNECTED: &str = "AllPeersConnected";
    /// Two nodes that both report their status do not see each other.
    pub const PEERS_MISSING: &str = "PeersMissing";
    /// Nodes do not see pods that are still starting (a scale-up, a restart); not trouble.
    pub const NODES_JOINING: &str = "NodesJoining";
    /// No node answered its status endpoint yet.
    pub const NO_MEMBERS: &str = "NoMembersReporting";
    /// Every node is below its high watermark.
    pub const MEMORY_OK: &str = "MemoryBelowHighWatermark";
    /// Some node is above its high watermark.
    pub const MEMORY_HIGH: &str = "MemoryAboveHighWatermark";
    /// The spec was applied.
    pub const RECONCILED: &str = "Reconciled";
    /// The spec is invalid; nothing was changed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A change of the spec cannot be carried out (e.g. shrinking a volume).
    pub const CHANGE_REFUSED: &str = "ChangeRefused";
    /// An API or network error; the operator retries with backoff.
    pub const RECONCILE_ERROR: &str = "ReconcileError";
    /// `spec.paused` is true.
    pub const PAUSED: &str = "ReconciliationPaused";
    /// `spec.paused` is false.
    pub const NOT_PAUSED: &str = "ReconciliationActive";
    /// Leaving nodes did not confirm within the bound; scale-down went on anyway.
    pub const LEAVE_TIMEOUT: &str = "LeaveTimedOut";
    /// The password Secret (or its key) the pods mount does not exist.
    pub const AUTH_SECRET_MISSING: &str = "AuthSecretMissing";
    /// Persistent volume claims were grown.
    pub const VOLUMES_EXPANDED: &str = "VolumesExpanded";
    /// `ReconcileSuccess` while `spec.paused` is true: the spec is not applied.
    pub const NOT_APPLIED_PAUSED: &str = "Paused";
    /// A pod cannot pull its image (`ImagePullBackOff`, `ErrImagePull`, `InvalidImageName`).
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// A pod's container keeps crashing (`CrashLoopBackOff`).
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// A pod's container cannot be created from its configuration (`CreateContainerConfigError`,
    /// `CreateContainerError`, `RunContainerError`).
    pub const CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    /// A node was killed by the kernel for exceeding its memory limit.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// A pod cannot be scheduled on any node.
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// The kubelet cannot create a pod's sandbox (e.g. a memory limit too small to start).
    pub const SANDBOX_FAILED: &str = "FailedCreatePodSandBox";
    /// A rollout or scaling made no progress within `spec.progressDeadlineSeconds`.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// Every node restarted with nothing to recover: the sessions held before are gone.
    pub const SESSIONS_LOST: &str = "SessionsLost";
    /// The client password changed; the pods roll and accept the new and the previous one.
    pub const PASSWORD_CHANGED: &str = "PasswordChanged";
    /// Every pod accepts the new password; the previous one is no longer given to new pods.
    pub const PASSWORD_ROTATED: &str = "PasswordRotated";
    /// The password in the auth Secret cannot be used (e.g. it spans several lines).
    pub const AUTH_SECRET_INVALID: &str = "AuthSecretInvalid";
    /// Someone changed an object the operator owns; the operator set it back.
    pub const OUTSIDE_CHANGE_REVERTED: &str = "OutsideChangeReverted";
    /// The ConfigMap held keys the operator does not set; they were removed.
    pub const EXTRA_CONFIG_REMOVED: &str = "ExtraConfigRemoved";
    /// The memory limit leaves a node less room above its high watermark than it needs.
    pub const MEMORY_HEADROOM_LOW: &str = "MemoryHeadroomLow";
    /// A node's clock is off from its peers' by more than
    /// [`CLOCK_SKEW_THRESHOLD_MS`](super::CLOCK_SKEW_THRESHOLD_MS), as most of them measure it.
    pub const CLOCK_SKEW: &str = "ClockSkew";
    /// The operator could not read the system's random source to generate a secret.
    pub const RANDOMNESS_UNAVAILABLE: &str = "RandomnessUnavailable";
    /// The TLS Secret named by `tls.secretRef` (or the generated one) does not exist.
    pub const TLS_SECRET_MISSING: &str = "TLSSecretMissing";
    /// The TLS Secret lacks a key or holds something that is not a usable certificate.
    pub const TLS_SECRET_INVALID: &str = "TLSSecretInvalid";
    /// The node certificate expires soon.
    pub const TLS_CERTIFICATE_EXPIRING: &str = "TLSCertificateExpiring";
    /// The operator issued (or renewed) the node certificate.
    pub const TLS_CERTIFICATE_ISSUED: &str = "TLSCertificateIssued";
    /// A named user's Secret is missing or unusable.
    pub const USER_SECRET_MISSING: &str = "UserSecretMissing";
}
