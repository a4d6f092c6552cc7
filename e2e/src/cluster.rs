//! SessionCluster manifests sized for a small shared test node, and the calls a test makes on
//! one: create, patch the spec, read the generated password.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use sessionstore_api::constants::PASSWORD_KEY;
use sessionstore_api::{names, SessionCluster};

/// A SessionCluster manifest `name` with `replicas` ram nodes and small resources (cpu request
/// 10m so several clusters fit on a 2-core node, memory 32Mi requested / 128Mi limit, 5s
/// shutdown bound so rollouts are quick), with `overrides` merged over the spec (JSON merge
/// patch semantics: objects merge, other values replace, `null` removes).
pub fn manifest(
    name: &str,
    replicas: i32,
    overrides: serde_json::Value,
) -> anyhow::Result<SessionCluster> {
    let mut spec = serde_json::json!({
        "replicas": replicas,
        "storage": {"mode": "ram"},
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
        "shutdownTimeout": "5s",
    });
    merge(&mut spec, overrides);
    let object = serde_json::json!({
        "apiVersion": "sessionstore.dev/v1alpha1",
        "kind": "SessionCluster",
        "metadata": {"name": name},
        "spec": spec,
    });
    serde_json::from_value(object).context("test manifest does not match the SessionCluster type")
}

/// JSON merge patch (RFC 7386) of `patch` into `target`.
pub fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match patch {
        serde_json::Value::Object(patch) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(serde_json::Map::new());
            }
            if let serde_json::Value::Object(map) = target {
                for (key, value) in patch {
                    if value.is_null() {
                        map.remove(&key);
                    } else {
                        merge(map.entry(key).or_insert(serde_json::Value::Null), value);
                    }
                }
            }
        }
        other => *target = other,
    }
}

/// The SessionCluster API of a namespace.
pub fn api(client: &Client, namespace: &str) -> Api<SessionCluster> {
    Api::namespaced(client.clone(), namespace)
}

/// Creates `cluster` in `namespace`.
pub async fn create(
    client: &Client,
    namespace: &str,
    cluster: &SessionCluster,
) -> anyhow::Result<SessionCluster> {
    api(client, namespace)
        .create(&PostParams::default(), cluster)
        .await
        .with_context(|| format!("failed to create SessionCluster in {namespace}"))
}

/// Merge-patches the spec of `name` with `spec` (a JSON object of spec fields).
pub async fn patch_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<SessionCluster> {
    api(client, namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .with_context(|| format!("failed to patch the spec of SessionCluster {name}"))
}

/// The client password of cluster `name` from the Secret `<name>-auth`, waiting up to 60s for
/// the operator to create it.
pub async fn password(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret_name = names::auth_secret(name);
    crate::wait::until(
        client,
        namespace,
        &format!("Secret {secret_name} with key {PASSWORD_KEY}"),
        Duration::from_secs(60),
        || {
            let secrets = secrets.clone();
            let secret_name = secret_name.clone();
            async move {
                let Some(secret) = secrets.get_opt(&secret_name).await? else {
                    return Ok(Err("absent".to_owned()));
                };
                let value = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(PASSWORD_KEY))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned());
                Ok(match value {
                    Some(password) if !password.is_empty() => Ok(password),
                    _ => Err(format!("no non-empty key {PASSWORD_KEY}")),
                })
            }
        },
    )
    .await
}
