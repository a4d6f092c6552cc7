//! 1. The operator installed by Helm (e2e/run.sh) is Ready, one of its pods holds the leader
//!    Lease, and only the Deployment's current pods exist when the tests start: after `make
//!    demo`, the install of the test run rolls the operator, and a pod still terminating then
//!    made the tests that compare the operator's pods before and after fail.

use std::time::Duration;

use anyhow::Context as _;
use e2e::{operator_name, operator_namespace, report, wait, Stopwatch};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const TEST: &str = "install";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn operator_is_ready_and_one_pod_holds_the_leader_lease() -> anyhow::Result<()> {
    let client = e2e::client().await?;
    let namespace = operator_namespace();
    let name = operator_name();
    let clock = Stopwatch::start();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("sessionclusters.sessionstore.dev")
        .await
        .context("the SessionCluster CRD is not installed")?;
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(
        established,
        "CRD sessionclusters.sessionstore.dev is not Established"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment = wait::until(
        &client,
        &namespace,
        &format!("Deployment {namespace}/{name} ready"),
        Duration::from_secs(120),
        || {
            let deployments = deployments.clone();
            let name = name.clone();
            async move {
                let d = deployments.get(&name).await?;
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let status = d.status.clone().unwrap_or_default();
                let current = status.observed_generation == d.metadata.generation;
                if current
                    && status.ready_replicas == Some(want)
                    && status.updated_replicas == Some(want)
                    && status.replicas == Some(want)
                {
                    Ok(Ok(d))
                } else {
                    Ok(Err(format!(
                        "want {want}: replicas {:?} ready {:?} updated {:?} observed {:?}/{:?}",
                        status.replicas,
                        status.ready_replicas,
                        status.updated_replicas,
                        status.observed_generation,
                        d.metadata.generation
                    )))
                }
            }
        },
    )
    .await?;
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    report(
        TEST,
        format!("Deployment ready with {replicas} replicas after {clock}"),
    );

    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let present = pods.list(&ListParams::default().labels(&selector)).await?;
    let terminating: Vec<String> = present
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| p.name_any())
        .collect();
    report(
        TEST,
        format!(
            "operator pods at the start: {:?}, terminating {terminating:?}",
            present.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        ),
    );
    assert!(
        terminating.is_empty() && present.items.len() == usize::try_from(replicas).unwrap_or(0),
        "e2e/run.sh started the tests while operator pods it replaced still existed: {terminating:?} of {} pods for {replicas} replicas",
        present.items.len()
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let leader = wait::until(
        &client,
        &namespace,
        &format!("Lease {namespace}/{name} held by an operator pod"),
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            let leases = leases.clone();
            let selector = selector.clone();
            let name = name.clone();
            async move {
                let names: Vec<String> = pods
                    .list(&ListParams::default().labels(&selector))
                    .await?
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| p.name_any())
                    .collect();
                let Some(lease) = leases.get_opt(&name).await? else {
                    return Ok(Err("no Lease yet".to_owned()));
                };
                let holder = lease.spec.and_then(|s| s.holder_identity);
                Ok(match holder {
                    Some(holder) if names.contains(&holder) => Ok(holder),
                    other => Err(format!("holder {other:?}, operator pods {names:?}")),
                })
            }
        },
    )
    .await?;
    report(TEST, format!("Lease {name} held by {leader} after {clock}"));

    let operator_pods = pods.list(&ListParams::default().labels(&selector)).await?;
    for pod in &operator_pods {
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|c| c.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        report(
            TEST,
            format!("operator pod {} restarts {restarts}", pod.name_any()),
        );
        assert_eq!(restarts, 0, "operator pod {} restarted", pod.name_any());
    }
    Ok(())
}
