//! 6. A disc SessionCluster survives the loss of every pod at once: after deleting all pods
//!    together, the nodes come back on the same PersistentVolumeClaims with every session.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, sessions, wait, Stopwatch};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use sessionstore_api::constants::{HTTP_PORT_NAME, RESP_PORT_NAME};
use sessionstore_api::names;
use sessionstore_api::pods::pod_is_ready;

const TEST: &str = "disc";
const NAME: &str = "durable";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn disc_cluster_keeps_every_session_when_all_pods_restart() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        let spec = serde_json::json!({
            "storage": {"mode": "disc", "size": "64Mi", "fsync": "everysec", "retention": {"whenDeleted": "Delete"}},
        });
        cluster::create(&client, &ns, &cluster::manifest(NAME, 3, spec)?).await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(300)).await?;
        report(TEST, format!("3 disc nodes Available and Clustered after {clock}"));

        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let claim_uids = |list: Vec<PersistentVolumeClaim>| -> BTreeMap<String, (String, String)> {
            list.into_iter()
                .map(|c| {
                    let phase = c.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                    (c.name_any(), (c.uid().unwrap_or_default(), phase))
                })
                .collect()
        };
        let before = claim_uids(claims.list(&ListParams::default()).await?.items);
        ensure!(before.len() == 3 && before.values().all(|(_, phase)| phase == "Bound"), "claims {before:?}");

        let password = cluster::password(&client, &ns, NAME).await?;
        let keys;
        let http_sessions;
        {
            let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
            let web = Forwarder::service(&client, &ns, &names::client_service(NAME), HTTP_PORT_NAME).await?;
            keys = sessions::write_keys(resp.addr(), &password, "disc", 200, 4).await?;
            http_sessions = sessions::write_http_sessions(web.addr(), &password, "disc", 20).await?;
        }
        // everysec: give the last writes their fsync before the pods go (the graceful shutdown
        // flushes as well; this keeps the test about restarts, not about the fsync policy).
        tokio::time::sleep(Duration::from_secs(2)).await;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let old: Vec<String> = wait::cluster_pods(&client, &ns, NAME).await?.iter().filter_map(|p| p.uid()).collect();
        let clock = Stopwatch::start();
        pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&names::selector_string(NAME))).await?;
        wait::until(&client, &ns, "all 3 pods recreated and Ready", Duration::from_secs(300), || async {
            let now = wait::cluster_pods(&client, &ns, NAME).await?;
            let fresh = now.iter().filter(|p| !old.contains(&p.uid().unwrap_or_default()) && pod_is_ready(p)).count();
            Ok(if fresh == 3 { Ok(()) } else { Err(format!("{fresh} of 3 recreated and ready")) })
        })
        .await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(120)).await?;
        report(TEST, format!("all pods deleted at once: back, Available and Clustered after {clock}"));

        let after = claim_uids(claims.list(&ListParams::default()).await?.items);
        ensure!(after == before, "the claims changed across the restart: before {before:?} after {after:?}");
        let pod_names: Vec<String> = (0..3).map(|i| names::pod(NAME, i)).collect();
        let clock = Stopwatch::start();
        sessions::verify_on_pods(&client, &ns, &pod_names, &password, &keys, Duration::from_secs(20)).await?;
        sessions::verify_http_on_pods(&client, &ns, &pod_names, &password, &http_sessions, Duration::from_secs(20)).await?;
        for pod in &pod_names {
            let forwarder = Forwarder::pod(&client, &ns, pod, 8080).await?;
            let node = sessions::node_status(forwarder.addr()).await?;
            ensure!(node["storage"]["mode"] == "disc", "{pod}: storage {}", node["storage"]);
        }
        report(TEST, format!("all {} RESP keys and {} HTTP sessions present on all 3 pods (checked in {clock})", keys.len(), http_sessions.len()));
        Ok(())
    })
    .await
}
