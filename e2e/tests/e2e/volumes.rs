//! 10. Disc volumes on a real cluster: the CRD refuses a shrink and a size that is not a quantity;
//!     growing `storage.size` expands every claim when the StorageClass allows it, and otherwise
//!     is explained in `Degraded` and a Warning while the cluster keeps serving; a scale-down
//!     keeps the removed node's claim (`whenScaled: Retain`, the default) and the scale-up after
//!     it reuses the same claim; deleting the SessionCluster keeps the claims (`whenDeleted:
//!     Retain`, the default).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, wait, Stopwatch};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use sessionstore_api::constants::{condition, reason};
use sessionstore_api::names;

use crate::bad_manifests::{refusal, rule_message};

const TEST: &str = "volumes";
const NAME: &str = "vault";

/// Claim name -> (uid, requested storage) of every claim in the namespace.
async fn claims(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|claim| {
            let request = claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_default();
            (claim.name_any(), (claim.uid().unwrap_or_default(), request))
        })
        .collect())
}

/// The API server's 422 message for a merge patch of the spec.
async fn refused_patch(
    client: &Client,
    ns: &str,
    spec: serde_json::Value,
) -> anyhow::Result<String> {
    let patch = serde_json::json!({ "spec": spec });
    refusal(
        &format!("the patch {spec}"),
        cluster::api(client, ns)
            .patch(NAME, &PatchParams::default(), &Patch::Merge(patch))
            .await,
    )
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn disc_volumes_grow_or_say_why_and_outlive_scale_down_and_deletion() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        let spec = serde_json::json!({"storage": {"mode": "disc", "size": "64Mi"}});
        cluster::create(&client, &ns, &cluster::manifest(NAME, 2, spec)?).await?;
        wait::cluster_ready(&client, &ns, NAME, 2, true, Duration::from_secs(300)).await?;
        let before = claims(&client, &ns).await?;
        let claim_names: Vec<String> = (0..2).map(|i| names::volume_claim(NAME, i)).collect();
        ensure!(before.keys().eq(claim_names.iter()), "claims {before:?}");
        ensure!(before.values().all(|(_, request)| request == "64Mi"), "claims {before:?}");
        report(TEST, format!("2 disc nodes Available and Clustered on 64Mi claims after {clock}"));

        // The CRD refuses what cannot be done, before the operator sees it.
        let shrink = rule_message(&client, "storage", "!has(self.size) || !has(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0").await?;
        let message = refused_patch(&client, &ns, serde_json::json!({"storage": {"size": "32Mi"}})).await?;
        report(TEST, format!("64Mi -> 32Mi -> {message}"));
        ensure!(
            message == format!("SessionCluster.sessionstore.dev \"{NAME}\" is invalid: spec.storage: Forbidden: {shrink}"),
            "shrink: {message}"
        );
        let not_quantity = "storage.size must be a Kubernetes quantity such as 1Gi, 500Mi or 10G";
        let message = refused_patch(&client, &ns, serde_json::json!({"storage": {"size": "lots"}})).await?;
        report(TEST, format!("size lots -> {message}"));
        ensure!(message.contains(&format!("spec.storage.size: Invalid value: \"string\": {not_quantity}")), "size lots: {message}");

        // Growth: the claims are patched; whether they may grow is the StorageClass's call.
        let class_name = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .get(&claim_names[0])
            .await?
            .spec
            .and_then(|s| s.storage_class_name)
            .with_context(|| format!("{} has no storageClassName", claim_names[0]))?;
        let expandable = Api::<StorageClass>::all(client.clone()).get(&class_name).await?.allow_volume_expansion == Some(true);
        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"storage": {"size": "128Mi"}})).await?;
        if expandable {
            wait::until(&client, &ns, "both claims requesting 128Mi", Duration::from_secs(60), || async {
                let now = claims(&client, &ns).await?;
                Ok(if now.values().all(|(_, request)| request == "128Mi") { Ok(()) } else { Err(format!("{now:?}")) })
            })
            .await?;
            let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
            ensure!(events.iter().any(|e| e.reason.as_deref() == Some(reason::VOLUMES_EXPANDED)), "no {} event", reason::VOLUMES_EXPANDED);
            report(TEST, format!("64Mi -> 128Mi on StorageClass {class_name}: both claims expanded after {clock}"));
        } else {
            let degraded = wait::cluster_until(&client, &ns, NAME, "Degraded explaining the refused expansion", Duration::from_secs(60), |c| {
                wait::condition_is(c, condition::DEGRADED, "True")
                    && wait::condition(c, condition::DEGRADED).is_some_and(|d| d.reason == reason::CHANGE_REFUSED)
            })
            .await?;
            let explained = wait::condition(&degraded, condition::DEGRADED).map(|d| d.message.clone()).unwrap_or_default();
            report(TEST, format!("64Mi -> 128Mi on StorageClass {class_name} (no allowVolumeExpansion) after {clock}: {explained}"));
            ensure!(
                claim_names.iter().any(|claim| explained.starts_with(&format!("storage.size cannot grow to 128Mi: the API server refused to expand claim {claim}: ")))
                    && explained.ends_with("The volumes keep their size until the StorageClass allows expansion (allowVolumeExpansion: true)"),
                "Degraded message: {explained}"
            );
            ensure!(wait::condition_is(&degraded, condition::AVAILABLE, "True"), "not Available: {}", wait::status_line(&degraded));
            // Part of the spec is not applied: ReconcileSuccess says so (docs/contract.md).
            ensure!(
                wait::condition_is(&degraded, condition::RECONCILE_SUCCESS, "False")
                    && wait::condition(&degraded, condition::RECONCILE_SUCCESS).is_some_and(|r| r.reason == reason::CHANGE_REFUSED),
                "ReconcileSuccess is not False/ChangeRefused: {}",
                wait::status_line(&degraded)
            );
            let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
            ensure!(
                events.iter().any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason::CHANGE_REFUSED)),
                "no Warning {} event",
                reason::CHANGE_REFUSED
            );
            let now = claims(&client, &ns).await?;
            ensure!(now == before, "claims changed: {before:?} -> {now:?}");
        }

        // Scale-down keeps the removed node's claim; the scale-up after it mounts the same one.
        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"replicas": 1})).await?;
        let removed = names::pod(NAME, 1);
        wait::until(&client, &ns, &format!("{removed} gone"), Duration::from_secs(180), || async {
            let pods: Vec<String> = wait::cluster_pods(&client, &ns, NAME).await?.iter().map(|p| p.name_any()).collect();
            Ok(if pods == [names::pod(NAME, 0)] { Ok(()) } else { Err(format!("pods {pods:?}")) })
        })
        .await?;
        let scaled = claims(&client, &ns).await?;
        let kept = &claim_names[1];
        ensure!(scaled.get(kept).map(|c| &c.0) == before.get(kept).map(|c| &c.0), "{kept} not kept: {before:?} -> {scaled:?}");
        report(TEST, format!("2 -> 1 after {clock}: claim {kept} kept"));
        let clock = Stopwatch::start();
        cluster::patch_spec(&client, &ns, NAME, serde_json::json!({"replicas": 2})).await?;
        wait::cluster_ready(&client, &ns, NAME, 2, true, Duration::from_secs(240)).await?;
        let regrown = claims(&client, &ns).await?;
        ensure!(regrown.keys().eq(claim_names.iter()), "claims after 1 -> 2: {regrown:?}");
        ensure!(regrown.get(kept).map(|c| &c.0) == before.get(kept).map(|c| &c.0), "{kept} was replaced: {before:?} -> {regrown:?}");
        report(TEST, format!("1 -> 2 after {clock}: {removed} Ready on the same claim"));

        // Deletion keeps the claims.
        let clock = Stopwatch::start();
        cluster::api(&client, &ns).delete(NAME, &DeleteParams::default()).await?;
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        wait::until(&client, &ns, "SessionCluster, StatefulSet and pods gone", Duration::from_secs(120), || async {
            let pods = wait::cluster_pods(&client, &ns, NAME).await?.len();
            let statefulset = statefulsets.get_opt(&names::statefulset(NAME)).await?.is_some();
            let cluster = cluster::api(&client, &ns).get_opt(NAME).await?.is_some();
            Ok(if pods == 0 && !statefulset && !cluster { Ok(()) } else { Err(format!("{pods} pods, StatefulSet {statefulset}, SessionCluster {cluster}")) })
        })
        .await?;
        // Give a wrong deletion of the claims time to show.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = claims(&client, &ns).await?;
        let uids = |c: &BTreeMap<String, (String, String)>| c.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect::<Vec<_>>();
        ensure!(uids(&after) == uids(&before), "claims after deletion: {before:?} -> {after:?}");
        report(TEST, format!("SessionCluster deleted ({clock}): both claims kept"));
        Ok(())
    })
    .await
}
