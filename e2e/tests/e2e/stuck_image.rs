//! 12. A nonexistent image: the rollout replaces one pod, which cannot pull it; within 60 s
//!     `Degraded` is `True` with reason `ImagePullBackOff` naming the pod and what to do, with a
//!     Warning event, while the other two nodes keep serving writes; past
//!     `progressDeadlineSeconds` `Progressing` turns `False` (`ProgressDeadlineExceeded`).
//!     Setting the image back recovers the cluster and every acknowledged write is on every pod.

use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, sessions, wait, Stopwatch};
use kube::ResourceExt;
use sessionstore_api::constants::{condition, reason, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "stuck-image";
const NAME: &str = "stuck";
const BAD_IMAGE: &str = "registry.invalid/sessionstore/store-node:missing";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn a_missing_image_is_named_in_degraded_and_reverting_recovers() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        let spec = serde_json::json!({"progressDeadlineSeconds": 30});
        cluster::create(&client, &ns, &cluster::manifest(NAME, 3, spec)?).await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(TEST, format!("3 nodes Available and Clustered after {clock}"));

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let traffic = sessions::Traffic::start(resp.addr(), &password, "stuck", 1, Duration::from_millis(50));

        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"image": BAD_IMAGE})).await?;
        let degraded = wait::cluster_until(&client, &ns, NAME, "Degraded=True (ImagePullBackOff)", Duration::from_secs(60), |c| {
            wait::condition(c, condition::DEGRADED).is_some_and(|d| d.status == "True" && d.reason == reason::IMAGE_PULL_BACK_OFF)
        })
        .await?;
        let message = wait::condition(&degraded, condition::DEGRADED).map(|c| c.message.clone()).unwrap_or_default();
        report(TEST, format!("image {BAD_IMAGE}: Degraded=True ImagePullBackOff after {clock}: {message}"));
        ensure!(
            message.starts_with(&format!("pod {} cannot pull image {BAD_IMAGE}: ", names::pod(NAME, 2)))
                && message.ends_with(". Check spec.image and spec.imagePullPolicy, and that the node can reach the registry; the other nodes keep serving"),
            "Degraded message {message:?}"
        );
        let available = wait::condition(&degraded, condition::AVAILABLE).map(|c| (c.status.clone(), c.message.clone()));
        ensure!(
            available == Some(("True".into(), "2 of 3 nodes ready (quorum 2)".into())),
            "Available while one pod is stuck: {available:?}"
        );
        let warning = wait::until(&client, &ns, "Warning event ImagePullBackOff", Duration::from_secs(30), || async {
            let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
            Ok(match events.iter().find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason::IMAGE_PULL_BACK_OFF)) {
                Some(event) => Ok(diagnostics::event_line(event)),
                None => Err(format!("{} events, none a Warning {}", events.len(), reason::IMAGE_PULL_BACK_OFF)),
            })
        })
        .await?;
        report(TEST, format!("event {warning}"));

        let stalled = wait::cluster_until(&client, &ns, NAME, "Progressing=False (ProgressDeadlineExceeded)", Duration::from_secs(90), |c| {
            wait::condition(c, condition::PROGRESSING).is_some_and(|p| p.status == "False" && p.reason == reason::PROGRESS_DEADLINE_EXCEEDED)
        })
        .await?;
        let progressing = wait::condition(&stalled, condition::PROGRESSING).map(|c| c.message.clone()).unwrap_or_default();
        report(TEST, format!("Progressing=False ProgressDeadlineExceeded after {clock}: {progressing}"));

        // Still serving: writes go on through the two good nodes.
        let before = traffic.stop().await?;
        report(TEST, format!("traffic while stuck: {}", before.summary()));
        ensure!(before.acknowledged.len() > 20, "too few writes acknowledged while a pod was stuck: {}", before.summary());
        let traffic = sessions::Traffic::start(resp.addr(), &password, "recovered", 1, Duration::from_millis(50));

        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"image": null})).await?;
        let recovered = wait::cluster_until(&client, &ns, NAME, "3 ready, Degraded=False, Progressing=False (UpToDate)", Duration::from_secs(180), |c| {
            let s = c.status.clone().unwrap_or_default();
            s.ready_replicas == 3
                && wait::condition_is(c, condition::DEGRADED, "False")
                && wait::condition(c, condition::PROGRESSING).is_some_and(|p| p.reason == reason::UP_TO_DATE)
                && wait::condition_is(c, condition::CLUSTERED, "True")
        })
        .await?;
        report(TEST, format!("image set back: recovered after {clock}: {}", wait::status_line(&recovered)));
        let after = traffic.stop().await?;
        report(TEST, format!("traffic while recovering: {}", after.summary()));

        let pods: Vec<String> = wait::cluster_pods(&client, &ns, NAME).await?.iter().map(|p| p.name_any()).collect();
        let mut written = before.acknowledged;
        written.extend(after.acknowledged);
        let checked = sessions::verify_on_pods(&client, &ns, &pods, &password, &written, Duration::from_secs(30)).await?;
        report(TEST, format!("all {checked} acknowledged writes on every pod"));
        Ok(())
    })
    .await
}
