//! SessionCluster custom resource types, the constants shared with the chart and the e2e suite,
//! and the CRD rendering used by the `crdgen` binary. No controller dependencies live here.

pub mod constants;
pub mod crd;
pub mod types;

pub use types::{
    AuthSpec, EvictionPolicy, FsyncPolicy, ImagePullPolicy, MemberStatus, MemorySpec,
    MonitoringSpec, NetworkPolicySpec, ReplicationSpec, RetentionPolicy, RetentionSpec,
    ScaleDownStatus, SecretKeyRef, ServiceSpec, ServiceType, SessionCluster, SessionClusterSpec,
    SessionClusterStatus, SessionsSpec, StorageMode, StorageSpec, WriteAck,
};
