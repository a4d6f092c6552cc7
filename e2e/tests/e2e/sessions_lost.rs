//! 13. Deleting every pod of a ram cluster: `Available` turns `False` within seconds (from the
//!     pods, not the StatefulSet's lagging counters), and once the nodes are back, empty, a
//!     Warning `SessionsLost` event and `Degraded` say the sessions are gone, which they are.

use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, sessions, wait, Stopwatch};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::Api;
use sessionstore_api::constants::{condition, reason, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "sessions-lost";
const NAME: &str = "fleeting";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn deleting_every_pod_of_a_ram_cluster_reports_the_sessions_lost() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(&client, &ns, &cluster::manifest(NAME, 2, serde_json::json!({}))?).await?;
        wait::cluster_ready(&client, &ns, NAME, 2, true, Duration::from_secs(180)).await?;
        report(TEST, format!("2 nodes Available and Clustered after {clock}"));

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let keys = sessions::write_keys(resp.addr(), &password, "gone", 50, 2).await?;
        // The operator learns that the nodes hold keys from a poll.
        wait::cluster_until(&client, &ns, NAME, "status.data.heldBy lists both nodes", Duration::from_secs(90), |c| {
            c.status.as_ref().and_then(|s| s.data.as_ref()).is_some_and(|d| d.held_by.len() == 2)
        })
        .await?;

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let clock = Stopwatch::start();
        pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels(&names::selector_string(NAME))).await?;
        let down = wait::cluster_until(&client, &ns, NAME, "Available=False", Duration::from_secs(30), |c| {
            wait::condition(c, condition::AVAILABLE).is_some_and(|a| a.status == "False")
        })
        .await?;
        report(
            TEST,
            format!(
                "all pods deleted: Available=False after {clock}: {}",
                wait::condition(&down, condition::AVAILABLE).map(|c| c.message.clone()).unwrap_or_default()
            ),
        );

        let lost = wait::until(&client, &ns, "Warning event SessionsLost", Duration::from_secs(240), || async {
            let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
            Ok(match events.iter().find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason::SESSIONS_LOST)) {
                Some(event) => Ok(event.message.clone().unwrap_or_default()),
                None => Err(format!("{} events, none a Warning {}", events.len(), reason::SESSIONS_LOST)),
            })
        })
        .await?;
        report(TEST, format!("SessionsLost event after {clock}: {lost}"));
        ensure!(
            lost.starts_with("every node restarted at ")
                && lost.ends_with(" with nothing to recover, so the sessions they held (up to 50 keys per node) are lost and clients must create them again; storage.mode ram keeps sessions only in memory; storage.mode disc survives a restart of every node"),
            "SessionsLost note {lost:?}"
        );
        let degraded = wait::cluster_until(&client, &ns, NAME, "Degraded=True (SessionsLost)", Duration::from_secs(60), |c| {
            wait::condition(c, condition::DEGRADED).is_some_and(|d| d.status == "True" && d.reason == reason::SESSIONS_LOST)
        })
        .await?;
        let message = wait::condition(&degraded, condition::DEGRADED).map(|c| c.message.clone()).unwrap_or_default();
        ensure!(message == lost, "Degraded says {message:?}, the event {lost:?}");

        // The event tells the truth: the keys are gone.
        wait::cluster_ready(&client, &ns, NAME, 2, true, Duration::from_secs(120)).await?;
        let missing = sessions::missing_keys(resp.addr(), &password, &keys).await?;
        ensure!(missing.len() == keys.len(), "{} of {} keys survived a full ram restart?", keys.len() - missing.len(), keys.len());
        let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
        let count = events.iter().filter(|e| e.reason.as_deref() == Some(reason::SESSIONS_LOST)).count();
        ensure!(count == 1, "{count} SessionsLost events");
        Ok(())
    })
    .await
}
