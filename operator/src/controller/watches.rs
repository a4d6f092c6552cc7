//! Which SessionCluster a watched object's change reconciles: its pods by their `instance`
//! label, and the Secrets its password comes from (the user's, without our labels or owner
//! reference) or goes to (`<name>-node-auth`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use sessionstore_api::constants::{LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_MANAGED_BY_VALUE};
use sessionstore_api::{names, SessionCluster};

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

/// The SessionClusters whose password `secret` holds: those naming it in `auth.secretRef`, the
/// one it was generated for (`<name>-auth`), and the one whose nodes mount it
/// (`<name>-node-auth`). A change to it reconciles them, which rolls their pods when the
/// password changed and writes the nodes' Secret again when someone changed or deleted it.
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
        .filter(|cluster| {
            names::node_auth_secret(&cluster.name_any()) == *secret_name
                || match &cluster.spec.auth.secret_ref {
                    Some(reference) => reference.name == *secret_name,
                    None => names::auth_secret(&cluster.name_any()) == *secret_name,
                }
        })
        .map(|cluster| ObjectRef::from_obj(cluster.as_ref()))
        .collect()
}

/// Secrets the operator watches: all but Helm release and service-account token Secrets, which
/// never hold a password a SessionCluster mounts (Helm's are large and change on every upgrade).
pub const SECRET_WATCH_FIELDS: &str =
    "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";
