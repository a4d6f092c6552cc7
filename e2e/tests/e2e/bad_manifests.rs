//! 8. Bad manifests are refused by the API server with the message the user needs (the schema
//!    and CEL rules of the CRD), so they never reach the operator; the operator keeps running
//!    (no restart) and keeps reconciling the valid cluster next to them. Each refusal is one
//!    message that names the bound it breaks: replicas 0 and 1000 (also through `kubectl
//!    scale`), a memory limit below 64Mi, watermarks out of order or out of range, a duration
//!    that is not one.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use e2e::namespace::with_namespace;
use e2e::{cluster, operator_name, operator_namespace, report, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use sessionstore_api::{rules, SessionCluster};

const TEST: &str = "bad-manifests";

/// `(pod name, uid, restarts)` of the operator's pods.
async fn operator_pods(client: &Client) -> anyhow::Result<Vec<(String, String, i32)>> {
    let namespace = operator_namespace();
    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace)
        .get(&operator_name())
        .await?;
    let selector = deployment
        .spec
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let mut out: Vec<(String, String, i32)> = pods
        .iter()
        .map(|p| {
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or(0);
            (p.name_any(), p.uid().unwrap_or_default(), restarts)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The message of the CEL rule `rule` on the field `spec.<field>` (`replicas`, `storage`,
/// `memory.highWatermark`) in the installed CRD: the exact text a user gets back.
pub(crate) async fn rule_message(
    client: &Client,
    field: &str,
    rule: &str,
) -> anyhow::Result<String> {
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("sessionclusters.sessionstore.dev")
        .await?;
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .context("no v1alpha1")?;
    let schema = serde_json::to_value(&version.schema)?;
    let mut node = &schema["openAPIV3Schema"]["properties"]["spec"];
    for part in field.split('.') {
        node = &node["properties"][part];
    }
    let rules = &node["x-kubernetes-validations"];
    rules
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["rule"] == rule))
        .and_then(|r| r["message"].as_str().map(str::to_owned))
        .with_context(|| format!("no CEL rule {rule:?} on spec.{field} in the installed CRD"))
}

/// The API server's refusal message of `result`; fails if it was accepted or failed otherwise.
pub(crate) fn refusal<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, kube::Error>,
) -> anyhow::Result<String> {
    match result {
        Ok(object) => bail!("{what} was accepted: {object:?}"),
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(status.message.clone()),
        Err(other) => bail!("{what}: expected 422 Invalid, got {other}"),
    }
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn bad_manifests_are_refused_with_the_message_a_user_needs() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let before = operator_pods(&client).await?;
        let typed = cluster::api(&client, &ns);
        let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<SessionCluster>(&()));
        let object = |name: &str, spec: serde_json::Value| -> anyhow::Result<DynamicObject> {
            Ok(serde_json::from_value(serde_json::json!({
                "apiVersion": "sessionstore.dev/v1alpha1", "kind": "SessionCluster",
                "metadata": {"name": name}, "spec": spec,
            }))?)
        };

        // replicas 0 and 1000: each told about the bound it breaks.
        let message = refusal("replicas 0", dynamic.create(&PostParams::default(), &object("zero", serde_json::json!({"replicas": 0}))?).await)?;
        report(TEST, format!("replicas 0 -> {message}"));
        let minimum = rule_message(&client, "replicas", rules::REPLICAS_MIN_RULE).await?;
        ensure!(minimum == rules::REPLICAS_MIN_MESSAGE, "installed CRD: {minimum}");
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"zero\" is invalid: spec.replicas: Invalid value: \"integer\": {minimum}"),
            "replicas 0: {message}"
        );
        ensure!(minimum.contains("paused: true"), "the message gives no way forward: {minimum}");
        let message = refusal("replicas 1000", dynamic.create(&PostParams::default(), &object("many", serde_json::json!({"replicas": 1000}))?).await)?;
        report(TEST, format!("replicas 1000 -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"many\" is invalid: spec.replicas: Invalid value: \"integer\": {}", rules::REPLICAS_MAX_MESSAGE),
            "replicas 1000: {message}"
        );

        // A memory limit below the floor (CEL on spec.resources).
        let small = serde_json::json!({"resources": {"limits": {"memory": "32Mi"}}});
        let message = refusal("limits.memory 32Mi", dynamic.create(&PostParams::default(), &object("small", small)?).await)?;
        report(TEST, format!("limits.memory 32Mi -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"small\" is invalid: spec.resources: Invalid value: \"object\": {}", rules::MEMORY_FLOOR_MESSAGE),
            "limits.memory 32Mi: {message}"
        );

        // Watermarks out of order, and a high watermark out of range.
        let crossed = serde_json::json!({"memory": {"highWatermark": 0.6, "lowWatermark": 0.7}});
        let message = refusal("low above high", dynamic.create(&PostParams::default(), &object("crossed", crossed)?).await)?;
        report(TEST, format!("lowWatermark 0.7 > highWatermark 0.6 -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"crossed\" is invalid: spec.memory: Invalid value: \"object\": {}", rules::WATERMARK_ORDER_MESSAGE),
            "watermarks crossed: {message}"
        );
        let beyond = serde_json::json!({"memory": {"highWatermark": 1.5}});
        let message = refusal("highWatermark 1.5", dynamic.create(&PostParams::default(), &object("beyond", beyond)?).await)?;
        report(TEST, format!("highWatermark 1.5 -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"beyond\" is invalid: spec.memory.highWatermark: Invalid value: \"number\": {}", rules::HIGH_WATERMARK_MESSAGE),
            "highWatermark 1.5: {message}"
        );

        // A duration that is not one: one message, not the schema's regex and a second error.
        let soon = serde_json::json!({"sessions": {"defaultTimeout": "soon"}});
        let message = refusal("defaultTimeout soon", dynamic.create(&PostParams::default(), &object("soon", soon)?).await)?;
        report(TEST, format!("sessions.defaultTimeout soon -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"soon\" is invalid: spec.sessions.defaultTimeout: Invalid value: \"string\": {}", rules::DEFAULT_TIMEOUT_DURATION_MESSAGE),
            "defaultTimeout soon: {message}"
        );

        // storage.mode: tape (schema enum).
        let message = refusal("mode tape", dynamic.create(&PostParams::default(), &object("tape", serde_json::json!({"storage": {"mode": "tape"}}))?).await)?;
        report(TEST, format!("storage.mode tape -> {message}"));
        ensure!(
            // The API server skips the CEL rules of an object that fails the schema and says so
            // in a second, generic error.
            message
                == "SessionCluster.sessionstore.dev \"tape\" is invalid: [spec.storage.mode: Unsupported value: \"tape\": \
                    supported values: \"ram\", \"disc\", <nil>: Invalid value: \"null\": some validation rules were not \
                    checked because the object was invalid; correct the existing errors to complete validation]",
            "mode tape: {message}"
        );

        // disc without a size (CEL rule).
        let required = rule_message(&client, "storage", "self.mode != 'disc' || has(self.size)").await?;
        let message = refusal("disc without size", dynamic.create(&PostParams::default(), &object("sizeless", serde_json::json!({"storage": {"mode": "disc"}}))?).await)?;
        report(TEST, format!("disc without size -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"sizeless\" is invalid: spec.storage: Required value: {required}"),
            "disc without size: {message}"
        );

        // Changing storage.mode of an existing cluster (CEL transition rule).
        let valid = cluster::manifest("steady", 1, serde_json::json!({}))?;
        cluster::create(&client, &ns, &valid).await?;
        let immutable = rule_message(&client, "storage", "self.mode == oldSelf.mode").await?;
        let change = typed
            .patch("steady", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"storage": {"mode": "disc", "size": "64Mi"}}})))
            .await;
        let message = refusal("ram -> disc", change)?;
        report(TEST, format!("storage.mode ram -> disc -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"steady\" is invalid: spec.storage: Forbidden: {immutable}"),
            "mode change: {message}"
        );
        ensure!(immutable.contains("create a new SessionCluster with the other mode"), "the message gives no way forward: {immutable}");

        // `kubectl scale --replicas 1000` goes through the scale subresource: the same rule.
        let scale = typed
            .patch_scale("steady", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"replicas": 1000}})))
            .await;
        let message = refusal("scale to 1000", scale)?;
        report(TEST, format!("scale --replicas 1000 -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"steady\" is invalid: spec.replicas: Invalid value: \"integer\": {}", rules::REPLICAS_MAX_MESSAGE),
            "scale to 1000: {message}"
        );

        // The operator ignored nothing it should not: the valid cluster becomes Available, and no
        // operator pod restarted or was replaced.
        wait::cluster_ready(&client, &ns, "steady", 1, false, Duration::from_secs(180)).await?;
        let after = operator_pods(&client).await?;
        report(TEST, format!("operator pods before {before:?} after {after:?}"));
        ensure!(after == before, "operator pods changed: before {before:?} after {after:?}");
        Ok(())
    })
    .await
}
