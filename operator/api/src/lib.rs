//! SessionCluster custom resource types.
