//! 5. Force-deleting a pod (grace period 0, like a node crash): the StatefulSet brings it back,
//!    it re-syncs from its peers and serves every session again.

use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, sessions, wait, Stopwatch};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

const TEST: &str = "pod-loss";
const NAME: &str = "sturdy";
const VICTIM: &str = "sturdy-1";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn force_deleted_pod_comes_back_and_resyncs() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(&client, &ns, &cluster::manifest(NAME, 3, serde_json::json!({}))?).await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(TEST, format!("3 nodes Available and Clustered after {clock}"));

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp = Forwarder::service(&client, &ns, NAME, "resp").await?;
        let web = Forwarder::service(&client, &ns, NAME, "http").await?;
        let keys = sessions::write_keys(resp.addr(), &password, "loss", 200, 4).await?;
        let http_sessions = sessions::write_http_sessions(web.addr(), &password, "loss", 20).await?;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let old_uid = pods.get(VICTIM).await?.uid().unwrap_or_default();
        let old_node_id = {
            let forwarder = Forwarder::pod(&client, &ns, VICTIM, 8080).await?;
            sessions::node_status(forwarder.addr()).await?["nodeId"].clone()
        };
        let clock = Stopwatch::start();
        pods.delete(VICTIM, &DeleteParams::default().grace_period(0)).await?;
        wait::until(&client, &ns, &format!("{VICTIM} recreated and Ready"), Duration::from_secs(180), || async {
            Ok(match pods.get_opt(VICTIM).await? {
                Some(pod) if pod.uid().unwrap_or_default() != old_uid && wait::pod_is_ready(&pod) => Ok(()),
                Some(pod) => Err(e2e::diagnostics::pod_summary(&pod)),
                None => Err("absent".to_owned()),
            })
        })
        .await?;
        let back = clock.elapsed();
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(120)).await?;
        report(TEST, format!("{VICTIM} back and Ready after {:.1}s, cluster Available and Clustered after {clock}", back.as_secs_f64()));

        let clock = Stopwatch::start();
        sessions::verify_on_pods(&client, &ns, &[VICTIM.to_owned()], &password, &keys, Duration::from_secs(20)).await?;
        sessions::verify_http_on_pods(&client, &ns, &[VICTIM.to_owned()], &password, &http_sessions, Duration::from_secs(20)).await?;
        let forwarder = Forwarder::pod(&client, &ns, VICTIM, 8080).await?;
        let node = sessions::node_status(forwarder.addr()).await?;
        ensure!(node["state"] == "ready", "{VICTIM} state {}", node["state"]);
        ensure!(node["nodeId"] != old_node_id, "{VICTIM} still reports nodeId {old_node_id}: not a new process");
        let keys_held = node["keys"].as_u64().unwrap_or(0);
        ensure!(keys_held >= (keys.len() + http_sessions.len()) as u64, "{VICTIM} holds {keys_held} keys");
        report(TEST, format!("{VICTIM} re-synced: all {} RESP keys and {} HTTP sessions present, {keys_held} keys held (checked in {clock})", keys.len(), http_sessions.len()));
        let all: Vec<String> = (0..3).map(|i| format!("{NAME}-{i}")).collect();
        sessions::verify_on_pods(&client, &ns, &all, &password, &keys, Duration::from_secs(20)).await?;
        Ok(())
    })
    .await
}
