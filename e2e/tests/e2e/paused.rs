//! 14. `spec.paused: true` with a change: the operator changes nothing, `observedGeneration`
//!     stays at the generation it applied and `ReconcileSuccess` says the spec is not applied;
//!     unpausing applies it.

use std::time::Duration;

use anyhow::ensure;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, wait, Stopwatch};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use sessionstore_api::constants::{condition, reason};
use sessionstore_api::names;

const TEST: &str = "paused";
const NAME: &str = "resting";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn a_paused_cluster_does_not_claim_its_spec_is_applied() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(&client, &ns, &cluster::manifest(NAME, 1, serde_json::json!({}))?).await?;
        let ready = wait::cluster_ready(&client, &ns, NAME, 1, false, Duration::from_secs(180)).await?;
        let applied = ready.metadata.generation;
        report(TEST, format!("1 node Available after {clock}, generation {applied:?}"));

        let clock = Stopwatch::start();
        let paused = cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"paused": true, "replicas": 2})).await?;
        let generation = paused.metadata.generation;
        let seen = wait::cluster_until(&client, &ns, NAME, "Paused=True and ReconcileSuccess=False (Paused)", Duration::from_secs(60), |c| {
            wait::condition(c, condition::PAUSED).is_some_and(|p| p.status == "True" && p.observed_generation == generation)
                && wait::condition(c, condition::RECONCILE_SUCCESS).is_some_and(|r| r.status == "False" && r.reason == reason::NOT_APPLIED_PAUSED)
        })
        .await?;
        let status = seen.status.clone().unwrap_or_default();
        let message = wait::condition(&seen, condition::RECONCILE_SUCCESS).map(|c| c.message.clone()).unwrap_or_default();
        report(TEST, format!("paused with replicas 2 (generation {generation:?}) after {clock}: observedGeneration {:?}; {message}", status.observed_generation));
        ensure!(status.observed_generation == applied, "observedGeneration {:?}, the applied generation is {applied:?}", status.observed_generation);
        let (Some(generation_number), Some(applied_number)) = (generation, applied) else {
            anyhow::bail!("no generation");
        };
        ensure!(
            message == format!("spec.paused is true: generation {generation_number} of the spec is not applied (the cluster runs generation {applied_number}); set paused: false to apply it"),
            "ReconcileSuccess message {message:?}"
        );
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let replicas = statefulsets.get(&names::statefulset(NAME)).await?.spec.and_then(|s| s.replicas);
        ensure!(replicas == Some(1), "the StatefulSet was scaled while paused: {replicas:?}");

        let clock = Stopwatch::start();
        let resumed = cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"paused": false})).await?;
        let resumed = wait::cluster_until(&client, &ns, NAME, "2 ready, observedGeneration current, ReconcileSuccess=True", Duration::from_secs(180), |c| {
            let s = c.status.clone().unwrap_or_default();
            s.observed_generation == resumed.metadata.generation
                && s.ready_replicas == 2
                && wait::condition_is(c, condition::RECONCILE_SUCCESS, "True")
                && wait::condition_is(c, condition::PAUSED, "False")
        })
        .await?;
        report(TEST, format!("unpaused: applied after {clock}: {}", wait::status_line(&resumed)));
        Ok(())
    })
    .await
}
