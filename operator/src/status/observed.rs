//! What one reconcile saw, as the input of the pure status computation.

use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::ScaleDownStatus;

use super::pods::PodProblem;

/// What the controller saw during one reconcile.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// SessionCluster name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub desired: i32,
    /// The StatefulSet's `spec.replicas` as applied (above `desired` during a scale-down).
    pub statefulset_replicas: i32,
    /// Pods that exist ([`super::pods::PodCounts::replicas`]).
    pub replicas: i32,
    /// Pods the spec asks for that are ready ([`super::pods::PodCounts::ready`]).
    pub ready: i32,
    /// Pods the spec asks for on the current revision ([`super::pods::PodCounts::updated`]).
    pub updated: i32,
    /// StatefulSet current revision differs from its update revision.
    pub rolling: bool,
    /// Each polled node, by pod name.
    pub members: Vec<NodeStatus>,
    /// A scale-down waiting for leaving nodes.
    pub scale_down: Option<ScaleDownStatus>,
    /// A change of the spec that cannot be carried out, explained.
    pub refused: Option<String>,
    /// A security input is missing or unusable (the password, TLS or user Secrets, the random
    /// source): the `Degraded` reason and the explanation.
    pub auth_problem: Option<(&'static str, String)>,
    /// The node certificate, for `status.tls`.
    pub tls: Option<sessionstore_api::TlsStatus>,
    /// Pods that are stuck, worst first ([`super::pods::problems`]).
    pub pod_problems: Vec<PodProblem>,
    /// `spec.progressDeadlineSeconds`.
    pub progress_deadline_seconds: i64,
    /// The memory limit leaves a node too little room above its high watermark, explained.
    pub headroom_warning: Option<String>,
    /// `storage.mode` is `ram` (a full restart loses the sessions).
    pub ram: bool,
}
