//! 3. Scale 3 → 5 → 2 under continuous client traffic: every acknowledged write is readable
//!    from every remaining pod, and the status and events tell the story (ScalingUp, then
//!    ScalingDown with the leaving nodes).

use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, sessions, wait, Stopwatch};
use kube::ResourceExt;
use sessionstore_api::constants::{reason, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "scale";
const NAME: &str = "elastic";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn scale_three_five_two_under_traffic_loses_nothing() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(&client, &ns, &cluster::manifest(NAME, 3, serde_json::json!({}))?).await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(TEST, format!("3 nodes Available and Clustered after {clock}"));

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let traffic = sessions::Traffic::start(resp.addr(), &password, "scale", 2, Duration::from_millis(25));
        tokio::time::sleep(Duration::from_secs(3)).await;

        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"replicas": 5})).await?;
        wait::cluster_ready(&client, &ns, NAME, 5, true, Duration::from_secs(240)).await?;
        report(TEST, format!("3 -> 5: 5 nodes Available and Clustered after {clock}"));
        tokio::time::sleep(Duration::from_secs(2)).await;

        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"replicas": 2})).await?;
        let scaled = wait::cluster_until(&client, &ns, NAME, "2 ready nodes, Available, Clustered, no scale-down in progress", Duration::from_secs(240), |c| {
            let s = c.status.clone().unwrap_or_default();
            s.replicas == 2
                && s.ready_replicas == 2
                && s.scale_down.is_none()
                && wait::condition_is(c, "Available", "True")
                && wait::condition_is(c, "Clustered", "True")
        })
        .await?;
        report(TEST, format!("5 -> 2: 2 nodes Available and Clustered after {clock}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let traffic = traffic.stop().await?;
        report(TEST, format!("traffic: {}", traffic.summary()));

        let pods: Vec<String> = wait::cluster_pods(&client, &ns, NAME)
            .await?
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        ensure!(pods == [names::pod(NAME, 0), names::pod(NAME, 1)], "pods after scale-down {pods:?}");
        ensure!(!traffic.acknowledged.is_empty(), "no write was acknowledged: {}", traffic.summary());
        let clock = Stopwatch::start();
        let checked = sessions::verify_on_pods(&client, &ns, &pods, &password, &traffic.acknowledged, Duration::from_secs(30)).await?;
        report(TEST, format!("all {checked} acknowledged writes present on both remaining pods (checked in {clock})"));
        let members: Vec<String> = scaled.status.unwrap_or_default().members.iter().map(|m| m.name.clone()).collect();
        report(TEST, format!("status.members after scale-down: {members:?}"));

        let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
        for event in &events {
            report(TEST, format!("event {}", diagnostics::event_line(event)));
        }
        let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
        let up = reasons.iter().position(|r| r == reason::SCALING_UP);
        let down = reasons.iter().position(|r| r == reason::SCALING_DOWN);
        ensure!(up.is_some(), "no {} event; reasons {reasons:?}", reason::SCALING_UP);
        ensure!(down.is_some(), "no {} event; reasons {reasons:?}", reason::SCALING_DOWN);
        ensure!(up < down, "ScalingUp should come before ScalingDown: {reasons:?}");
        Ok(())
    })
    .await
}
