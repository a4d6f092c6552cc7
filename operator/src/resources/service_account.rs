//! The nodes' ServiceAccount: store-node never talks to the API server, so no token is mounted.

use k8s_openapi::api::core::v1::ServiceAccount;

use sessionstore_api::names;

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// The ServiceAccount `<name>-node` with `automountServiceAccountToken: false`.
pub fn build_service_account(cluster: &ValidatedCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(cluster, names::service_account(&cluster.name)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
