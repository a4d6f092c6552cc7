//! What one reconcile saw, as the input of the pure status computation.

use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::ScaleDownStatus;

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
    /// StatefulSet `status.replicas`.
    pub replicas: i32,
    /// StatefulSet `status.readyReplicas`.
    pub ready: i32,
    /// StatefulSet `status.updatedReplicas`.
    pub updated: i32,
    /// StatefulSet current revision differs from its update revision.
    pub rolling: bool,
    /// Each polled node, by pod name.
    pub members: Vec<NodeStatus>,
    /// A scale-down waiting for leaving nodes.
    pub scale_down: Option<ScaleDownStatus>,
    /// A change of the spec that cannot be carried out, explained.
    pub refused: Option<String>,
    /// The password Secret the pods mount is missing, explained.
    pub auth_missing: Option<String>,
}
