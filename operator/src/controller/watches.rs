//! Which SessionCluster a watched object's change reconciles: its pods by their `instance`
//! label, and the Secrets it reads: the ones the operator owns (`<name>-node-auth`,
//! `<name>-auth`, `<name>-peer-key`, `<name>-operator-token`, `<name>-tls`, `<name>-ca`) and the
//! user's Secrets labelled [`WATCH_LABEL`] that it references (`auth.secretRef`,
//! `tls.secretRef`, `auth.users[].secretRef`). The Secret watches select by label and keep
//! metadata only: the operator caches no Secret's data and sees no Secret it has no business
//! with. An unlabelled Secret it references is read at every reconcile (at least once a minute).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use sessionstore_api::constants::{LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_MANAGED_BY_VALUE};
use sessionstore_api::{names, SessionCluster};

/// The label a user puts on a Secret a SessionCluster references (value `true`) so that a
/// change to it is acted on at once rather than at the next periodic reconcile.
pub const WATCH_LABEL: &str = "sessionstore.dev/watch";

/// The label selector of the user's Secrets the operator watches.
pub fn watched_secret_selector() -> String {
    format!("{WATCH_LABEL}=true")
}

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

/// The Secrets a cluster reads: those it owns and those its spec references.
fn secrets_of(cluster: &SessionCluster) -> Vec<String> {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let mut secrets = vec![
        names::node_auth_secret(&name),
        names::peer_key_secret(&name),
        names::operator_token_secret(&name),
        names::tls_secret(&name),
        names::tls_ca_secret(&name),
    ];
    if spec.auth.enabled {
        secrets.push(match &spec.auth.secret_ref {
            Some(reference) => reference.name.clone(),
            None => names::auth_secret(&name),
        });
    }
    secrets.extend(spec.tls.secret_ref.iter().map(|r| r.name.clone()));
    secrets.extend(spec.auth.users.iter().map(|u| u.secret_ref.name.clone()));
    secrets
}

/// The SessionClusters of `namespace` that read the Secret `secret`. A change to it reconciles
/// them: a new password rolls their pods, a deleted generated Secret is made again, a new
/// certificate is checked and reported.
pub fn clusters_using_secret(
    clusters: &[Arc<SessionCluster>],
    namespace: &str,
    secret: &str,
) -> Vec<ObjectRef<SessionCluster>> {
    clusters
        .iter()
        .filter(|cluster| cluster.namespace().as_deref() == Some(namespace))
        .filter(|cluster| secrets_of(cluster).iter().any(|name| name == secret))
        .map(|cluster| ObjectRef::from_obj(cluster.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, spec: serde_json::Value) -> Arc<SessionCluster> {
        Arc::new(crate::validate::tests::cluster(name, spec))
    }

    #[test]
    fn a_secret_reconciles_the_clusters_that_read_it() {
        let clusters = vec![
            cluster("demo", serde_json::json!({})),
            cluster(
                "web",
                serde_json::json!({
                    "auth": {"secretRef": {"name": "web-pass"},
                             "users": [{"name": "ro", "secretRef": {"name": "ro-pass"}}]},
                    "tls": {"enabled": true, "secretRef": {"name": "web-cert"}}
                }),
            ),
        ];
        let names_of = |secret: &str| -> Vec<String> {
            clusters_using_secret(&clusters, "apps", secret)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        for owned in [
            "demo-auth",
            "demo-node-auth",
            "demo-peer-key",
            "demo-operator-token",
            "demo-tls",
            "demo-ca",
        ] {
            assert_eq!(names_of(owned), ["demo"], "{owned}");
        }
        for referenced in ["web-pass", "ro-pass", "web-cert"] {
            assert_eq!(names_of(referenced), ["web"], "{referenced}");
        }
        assert_eq!(names_of("web-auth"), Vec::<String>::new());
        assert!(clusters_using_secret(&clusters, "other", "demo-auth").is_empty());
    }
}
