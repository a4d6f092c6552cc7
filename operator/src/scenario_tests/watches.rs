//! Which cluster a watched pod or Secret reconciles.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use serde_json::{json, Value};
use sessionstore_api::SessionCluster;

use super::harness::{Harness, STS};
use crate::controller::{cluster_of_pod, clusters_using_secret};

#[tokio::test]
async fn pods_of_the_statefulset_map_back_to_their_cluster() {
    let h = Harness::new();
    h.reconcile(json!({"podLabels": {"team": "web"}})).await;
    let template_labels =
        h.api.get(STS).unwrap_or_default()["spec"]["template"]["metadata"]["labels"].clone();
    let pod = |labels: Value| -> Pod {
        match serde_json::from_value(json!({"metadata": {
            "name": "demo-0", "namespace": "apps", "labels": labels}}))
        {
            Ok(pod) => pod,
            Err(error) => panic!("bad test pod: {error}"),
        }
    };
    assert_eq!(
        cluster_of_pod(&pod(template_labels.clone())),
        Some(ObjectRef::new("demo").within("apps"))
    );
    // A store-node pod some other tool manages is not ours.
    let mut foreign = template_labels.clone();
    foreign["app.kubernetes.io/managed-by"] = json!("helm");
    assert_eq!(cluster_of_pod(&pod(foreign)), None);
    let mut unnamed = template_labels;
    if let Some(labels) = unnamed.as_object_mut() {
        labels.remove("app.kubernetes.io/instance");
    }
    assert_eq!(cluster_of_pod(&pod(unnamed)), None);
    assert_eq!(
        sessionstore_api::names::pod_watch_selector(),
        "app.kubernetes.io/name=store-node,app.kubernetes.io/managed-by=sessionstore-operator"
    );
}

#[test]
fn secrets_map_to_the_clusters_that_mount_them() {
    let cluster = |name: &str, namespace: &str, auth: Value| -> Arc<SessionCluster> {
        match serde_json::from_value(json!({
            "apiVersion": "sessionstore.dev/v1alpha1", "kind": "SessionCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"auth": auth}}))
        {
            Ok(c) => Arc::new(c),
            Err(e) => panic!("bad test object: {e}"),
        }
    };
    let clusters = [
        cluster(
            "web",
            "apps",
            json!({"secretRef": {"name": "shared", "key": "pw"}}),
        ),
        cluster("api", "apps", json!({"secretRef": {"name": "shared"}})),
        cluster("other", "staging", json!({"secretRef": {"name": "shared"}})),
        cluster("gen", "apps", json!({})),
        cluster(
            "open",
            "apps",
            json!({"enabled": false, "secretRef": {"name": "shared"}}),
        ),
    ];
    let names = |secret_name: &str| -> Vec<String> {
        clusters_using_secret(&clusters, "apps", secret_name)
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    };
    assert_eq!(names("shared"), ["apps/web", "apps/api"]);
    assert_eq!(names("gen-auth"), ["apps/gen"]);
    assert_eq!(names("web-node-auth"), ["apps/web"]);
    assert_eq!(names("gen-node-auth"), ["apps/gen"]);
    assert_eq!(names("unrelated"), Vec::<String>::new());
}
