//! Bounded waits. Each polls (every 500 ms) until a predicate holds or the timeout passes; on
//! timeout the error says what was awaited, the last observed value and the namespace
//! diagnostics (SessionCluster status, pods, events).

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use kube::{Api, Client};
use sessionstore_api::{names, SessionCluster};

use crate::diagnostics;

const POLL: Duration = Duration::from_millis(500);

/// Polls `probe` until it returns `Ok(Some(value))`, for at most `timeout`. `Ok(None)` and
/// `Err` mean "not yet"; the last message (the `Err` text or `describe` of the last value) is
/// in the timeout error together with the namespace diagnostics.
pub async fn until<T, F, Fut>(
    client: &Client,
    namespace: &str,
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => state,
            Err(error) => format!("error: {error:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            let report = diagnostics::namespace_report(client, namespace).await;
            bail!(
                "timed out after {:.0}s waiting for {what}; last seen: {last}\n{report}",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The condition `type_` of a SessionCluster, if present.
pub fn condition<'a>(cluster: &'a SessionCluster, type_: &str) -> Option<&'a Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// True when condition `type_` has `status` ("True"/"False") and was computed for the current
/// generation of the spec (so a stale condition from before a change does not count).
pub fn condition_is(cluster: &SessionCluster, type_: &str, status: &str) -> bool {
    let generation = cluster.metadata.generation;
    let observed = cluster.status.as_ref().and_then(|s| s.observed_generation);
    condition(cluster, type_)
        .is_some_and(|c| c.status == status && (generation.is_none() || observed == generation))
}

/// A one-line summary of a SessionCluster's status for progress and timeout messages.
pub fn status_line(cluster: &SessionCluster) -> String {
    let Some(status) = &cluster.status else {
        return "no status yet".to_owned();
    };
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .map(|c| format!("{}={}({})", c.type_, c.status, c.reason))
        .collect();
    format!(
        "generation {:?} observed {:?} replicas {} ready {} updated {} [{}]",
        cluster.metadata.generation,
        status.observed_generation,
        status.replicas,
        status.ready_replicas,
        status.updated_replicas,
        conditions.join(" ")
    )
}

/// Waits until the SessionCluster `name` satisfies `predicate`, returning it.
pub async fn cluster_until(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    predicate: impl Fn(&SessionCluster) -> bool,
) -> anyhow::Result<SessionCluster> {
    let api: Api<SessionCluster> = Api::namespaced(client.clone(), namespace);
    until(
        client,
        namespace,
        &format!("SessionCluster {name}: {what}"),
        timeout,
        || {
            let api = api.clone();
            let predicate = &predicate;
            async move {
                let cluster = api.get(name).await?;
                if predicate(&cluster) {
                    Ok(Ok(cluster))
                } else {
                    Ok(Err(status_line(&cluster)))
                }
            }
        },
    )
    .await
}

/// Waits until `name` has `replicas` ready nodes of the current spec and is `Available` (and
/// `Clustered` when `clustered`), returning it.
pub async fn cluster_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
    clustered: bool,
    timeout: Duration,
) -> anyhow::Result<SessionCluster> {
    let what = format!(
        "{replicas} ready replicas, Available{}",
        if clustered { " and Clustered" } else { "" }
    );
    cluster_until(client, namespace, name, &what, timeout, |c| {
        let status = c.status.clone().unwrap_or_default();
        status.replicas == replicas
            && status.ready_replicas == replicas
            && status.updated_replicas == replicas
            && condition_is(c, sessionstore_api::constants::condition::AVAILABLE, "True")
            && (!clustered
                || condition_is(c, sessionstore_api::constants::condition::CLUSTERED, "True"))
    })
    .await
}

/// The pods of SessionCluster `name`, sorted by name.
pub async fn cluster_pods(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pods = api
        .list(&ListParams::default().labels(&names::selector_string(name)))
        .await?
        .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(pods)
}
