//! What the operator, store-node, the chart and the e2e suite must agree on: object names and
//! labels ([`names`]), ports, condition types and reasons ([`constants`]), the node's
//! `/v1/status` document ([`node_status`]), the bounds of a valid spec ([`rules`]) and, behind
//! the default `k8s` feature, the SessionCluster custom resource, its CRD rendering (the
//! `crdgen` binary) and Pod helpers.
//!
//! With `default-features = false` the crate depends on serde alone, so store-node shares these
//! types without linking kube, k8s-openapi or schemars. No controller code lives here.

pub mod constants;
pub mod names;
pub mod node_status;
pub mod rules;

#[cfg(feature = "k8s")]
pub mod crd;
#[cfg(feature = "k8s")]
pub mod pods;
#[cfg(feature = "k8s")]
pub mod security;
#[cfg(feature = "k8s")]
pub mod types;

#[cfg(all(test, feature = "k8s"))]
mod cel_tests;

#[cfg(feature = "k8s")]
pub use types::{
    AuthSpec, DataStatus, EvictionPolicy, FsyncPolicy, ImagePullPolicy, LocalSecretRef,
    MemberStatus, MemorySpec, MonitoringSpec, NetworkPolicySpec, ReplicationSpec, RetentionPolicy,
    RetentionSpec, ScaleDownStatus, SecretKeyRef, ServiceSpec, ServiceType, SessionCluster,
    SessionClusterSpec, SessionClusterStatus, SessionsSpec, StorageMode, StorageSpec, TlsSpec,
    TlsStatus, UserRole, UserSpec, WriteAck,
};
