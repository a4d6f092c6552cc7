//! 4. A rolling restart (`spec.restartedAt`) and then a configuration change
//!    (`sessions.defaultTimeout`) under continuous traffic: every pod is replaced, at most one
//!    desired pod is unavailable at any moment (watched pod by pod), no acknowledged write is
//!    lost, and the client errors are counted, reported and bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use e2e::availability::AvailabilityWatch;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, sessions, wait, Stopwatch};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, ResourceExt};
use sessionstore_api::constants::{
    ANNOTATION_CONFIG_HASH, ANNOTATION_RESTARTED_AT, RESP_PORT_NAME,
};
use sessionstore_api::names;
use sessionstore_api::pods::pod_is_ready;

const TEST: &str = "rolling";
const NAME: &str = "rolling";

/// Waits until every one of `replicas` pods has a UID not in `old` and is Ready, and the
/// cluster is Available and Clustered with all replicas updated.
async fn wait_replaced(
    client: &Client,
    ns: &str,
    old: &BTreeSet<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait::until(
        client,
        ns,
        "every pod replaced and Ready",
        timeout,
        || async {
            let pods = wait::cluster_pods(client, ns, NAME).await?;
            let fresh = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| !old.contains(&p.uid().unwrap_or_default()))
                .filter(|p| pod_is_ready(p))
                .count();
            if fresh < 3 {
                return Ok(Err(format!("{fresh} of 3 pods replaced and ready")));
            }
            let c = cluster::api(client, ns).get(NAME).await?;
            let s = c.status.clone().unwrap_or_default();
            if s.ready_replicas == 3
                && s.updated_replicas == 3
                && wait::condition_is(&c, "Available", "True")
                && wait::condition_is(&c, "Clustered", "True")
            {
                Ok(Ok(()))
            } else {
                Ok(Err(wait::status_line(&c)))
            }
        },
    )
    .await
}

async fn uids(client: &Client, ns: &str) -> anyhow::Result<BTreeSet<String>> {
    Ok(wait::cluster_pods(client, ns, NAME)
        .await?
        .iter()
        .filter_map(|p| p.uid())
        .collect())
}

fn template_annotation(sts: &StatefulSet, key: &str) -> Option<String> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn rolling_restart_and_config_change_replace_pods_one_at_a_time() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(&client, &ns, &cluster::manifest(NAME, 3, serde_json::json!({}))?).await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(TEST, format!("3 nodes Available and Clustered after {clock}"));
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let hash_before = template_annotation(&statefulsets.get(&names::statefulset(NAME)).await?, ANNOTATION_CONFIG_HASH)
            .context("no config-hash annotation on the pod template")?;

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let traffic = sessions::Traffic::start(resp.addr(), &password, "roll", 2, Duration::from_millis(25));
        let watch = AvailabilityWatch::start(&client, &ns, NAME, 3);
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Rolling restart.
        let before = uids(&client, &ns).await?;
        let restarted_at = k8s_openapi::jiff::Timestamp::now().to_string();
        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"restartedAt": restarted_at})).await?;
        wait_replaced(&client, &ns, &before, Duration::from_secs(300)).await?;
        report(TEST, format!("restartedAt: 3 pods replaced, cluster Available and Clustered after {clock}"));
        let sts = statefulsets.get(&names::statefulset(NAME)).await?;
        ensure!(
            template_annotation(&sts, ANNOTATION_RESTARTED_AT).as_deref() == Some(restarted_at.as_str()),
            "pod template {ANNOTATION_RESTARTED_AT} = {:?}, expected {restarted_at}",
            template_annotation(&sts, ANNOTATION_RESTARTED_AT)
        );

        // Configuration change: 45m = 2700 s in the ConfigMap, a new hash, another roll.
        let before = uids(&client, &ns).await?;
        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"sessions": {"defaultTimeout": "45m"}})).await?;
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let config_map_name = names::config_map(NAME);
        wait::until(&client, &ns, "ConfigMap STORE_NODE_DEFAULT_SESSION_TIMEOUT=2700", Duration::from_secs(60), || async {
            let cm = config_maps.get(&config_map_name).await?;
            let value = cm.data.unwrap_or_default().get("STORE_NODE_DEFAULT_SESSION_TIMEOUT").cloned();
            Ok(if value.as_deref() == Some("2700") { Ok(()) } else { Err(format!("{value:?}")) })
        })
        .await?;
        wait_replaced(&client, &ns, &before, Duration::from_secs(300)).await?;
        report(TEST, format!("defaultTimeout 30m -> 45m: 3 pods replaced, cluster Available and Clustered after {clock}"));
        let hash_after = template_annotation(&statefulsets.get(&names::statefulset(NAME)).await?, ANNOTATION_CONFIG_HASH);
        ensure!(hash_after.as_deref() != Some(hash_before.as_str()), "config-hash did not change: {hash_before}");

        tokio::time::sleep(Duration::from_secs(2)).await;
        let availability = watch.stop();
        let traffic = traffic.stop().await?;
        for (at, unavailable) in &availability.timeline {
            report(TEST, format!("t={at:.1}s unavailable {unavailable:?}"));
        }
        report(TEST, format!("max unavailable pods at once: {} ({} pod events)", availability.max_unavailable, availability.events));
        report(TEST, format!("traffic: {}", traffic.summary()));
        ensure!(availability.max_unavailable <= 1, "{} pods were unavailable at once", availability.max_unavailable);
        ensure!(availability.timeline.len() >= 7, "the watch saw too few changes for 6 replacements: {:?}", availability.timeline);

        let pods: Vec<String> = wait::cluster_pods(&client, &ns, NAME).await?.iter().map(|p| p.name_any()).collect();
        let clock = Stopwatch::start();
        let checked = sessions::verify_on_pods(&client, &ns, &pods, &password, &traffic.acknowledged, Duration::from_secs(30)).await?;
        report(TEST, format!("all {checked} acknowledged writes present on all 3 pods (checked in {clock})"));
        // Each of the 6 replacements may break each writer's connection once and cost a few
        // reconnect attempts while the Service drops the endpoint.
        let bound = 6 * 2 * 5;
        ensure!(traffic.errors <= bound, "{} client errors, more than {bound}: {}", traffic.errors, traffic.summary());
        Ok(())
    })
    .await
}
