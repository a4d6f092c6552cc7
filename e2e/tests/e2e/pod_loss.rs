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
use sessionstore_api::constants::{HTTP_PORT_NAME, RESP_PORT_NAME};
use sessionstore_api::names;
use sessionstore_api::pods::pod_is_ready;

const TEST: &str = "pod-loss";
const NAME: &str = "sturdy";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn force_deleted_pod_comes_back_and_resyncs() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(&client, &ns, &cluster::manifest(NAME, 3, serde_json::json!({}))?).await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(TEST, format!("3 nodes Available and Clustered after {clock}"));

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let web = Forwarder::service(&client, &ns, &names::client_service(NAME), HTTP_PORT_NAME).await?;
        let keys = sessions::write_keys(resp.addr(), &password, "loss", 200, 4).await?;
        let http_sessions = sessions::write_http_sessions(web.addr(), &password, "loss", 20).await?;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let victim = names::pod(NAME, 1);
        let old_uid = pods.get(&victim).await?.uid().unwrap_or_default();
        let old_node_id = {
            let forwarder = Forwarder::pod(&client, &ns, &victim, 8080).await?;
            sessions::node_status(forwarder.addr()).await?["nodeId"].clone()
        };
        let clock = Stopwatch::start();
        pods.delete(&victim, &DeleteParams::default().grace_period(0)).await?;
        wait::until(&client, &ns, &format!("{victim} recreated and Ready"), Duration::from_secs(180), || async {
            Ok(match pods.get_opt(&victim).await? {
                Some(pod) if pod.uid().unwrap_or_default() != old_uid && pod_is_ready(&pod) => Ok(()),
                Some(pod) => Err(e2e::diagnostics::pod_summary(&pod)),
                None => Err("absent".to_owned()),
            })
        })
        .await?;
        let back = clock.elapsed();
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(120)).await?;
        report(TEST, format!("{victim} back and Ready after {:.1}s, cluster Available and Clustered after {clock}", back.as_secs_f64()));

        let clock = Stopwatch::start();
        sessions::verify_on_pods(&client, &ns, std::slice::from_ref(&victim), &password, &keys, Duration::from_secs(20)).await?;
        sessions::verify_http_on_pods(&client, &ns, std::slice::from_ref(&victim), &password, &http_sessions, Duration::from_secs(20)).await?;
        let forwarder = Forwarder::pod(&client, &ns, &victim, 8080).await?;
        let node = sessions::node_status(forwarder.addr()).await?;
        ensure!(node["state"] == "ready", "{victim} state {}", node["state"]);
        ensure!(node["nodeId"] != old_node_id, "{victim} still reports nodeId {old_node_id}: not a new process");
        let keys_held = node["keys"].as_u64().unwrap_or(0);
        ensure!(keys_held >= (keys.len() + http_sessions.len()) as u64, "{victim} holds {keys_held} keys");
        report(TEST, format!("{victim} re-synced: all {} RESP keys and {} HTTP sessions present, {keys_held} keys held (checked in {clock})", keys.len(), http_sessions.len()));
        let all: Vec<String> = (0..3).map(|i| names::pod(NAME, i)).collect();
        sessions::verify_on_pods(&client, &ns, &all, &password, &keys, Duration::from_secs(20)).await?;
        Ok(())
    })
    .await
}
