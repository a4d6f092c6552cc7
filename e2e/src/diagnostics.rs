//! What a failing test prints: the SessionClusters' status, the StatefulSets, every pod's state
//! and the namespace's events, so a timeout says what the cluster was doing.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use sessionstore_api::pods::pod_is_ready;
use sessionstore_api::SessionCluster;

/// A multi-line report of namespace `namespace`. Never fails: API errors are part of the text.
pub async fn namespace_report(client: &Client, namespace: &str) -> String {
    let mut out = format!("---- diagnostics of namespace {namespace} ----\n");
    let clusters: Api<SessionCluster> = Api::namespaced(client.clone(), namespace);
    match clusters.list(&ListParams::default()).await {
        Ok(list) => {
            for cluster in list {
                let _ = writeln!(
                    out,
                    "SessionCluster {} (generation {:?}, spec.replicas {}):",
                    cluster.name_any(),
                    cluster.metadata.generation,
                    cluster.spec.replicas
                );
                let status = serde_json::to_string_pretty(&cluster.status)
                    .unwrap_or_else(|error| format!("(status not serialisable: {error})"));
                for line in status.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        Err(error) => {
            let _ = writeln!(out, "SessionClusters: list failed: {error}");
        }
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = statefulsets.list(&ListParams::default()).await {
        for sts in list {
            let status = sts.status.clone().unwrap_or_default();
            let _ = writeln!(
                out,
                "StatefulSet {}: replicas {} ready {:?} updated {:?} current rev {:?} update rev {:?}",
                sts.name_any(),
                status.replicas,
                status.ready_replicas,
                status.updated_replicas,
                status.current_revision,
                status.update_revision
            );
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            for pod in list {
                let _ = writeln!(out, "Pod {}", pod_summary(&pod));
            }
        }
        Err(error) => {
            let _ = writeln!(out, "Pods: list failed: {error}");
        }
    }
    let _ = writeln!(out, "{}", events_report(client, namespace, 60).await);
    out.push_str("---- end of diagnostics ----");
    out
}

/// One line about a pod: phase, readiness, restarts, deletion and container states.
pub fn pod_summary(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let ready = pod_is_ready(pod);
    let mut containers = Vec::new();
    for c in status.container_statuses.unwrap_or_default() {
        let state = match &c.state {
            Some(s) if s.running.is_some() => "running".to_owned(),
            Some(s) => match (&s.waiting, &s.terminated) {
                (Some(w), _) => format!(
                    "waiting {} {}",
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default()
                ),
                (_, Some(t)) => format!(
                    "terminated {} exit {}",
                    t.reason.clone().unwrap_or_default(),
                    t.exit_code
                ),
                _ => "unknown".to_owned(),
            },
            None => "no state".to_owned(),
        };
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| {
                format!(
                    " (last: {} exit {})",
                    t.reason.clone().unwrap_or_default(),
                    t.exit_code
                )
            })
            .unwrap_or_default();
        containers.push(format!(
            "{}: {state}, restarts {}{last}",
            c.name, c.restart_count
        ));
    }
    format!(
        "{} phase {} ready {ready}{} ip {} [{}]",
        pod.name_any(),
        status.phase.unwrap_or_default(),
        if pod.metadata.deletion_timestamp.is_some() {
            " TERMINATING"
        } else {
            ""
        },
        status.pod_ip.unwrap_or_default(),
        containers.join("; ")
    )
}

/// The namespace's events (core/v1 view, which includes the events.k8s.io ones), oldest first,
/// at most the `limit` newest.
pub async fn events(client: &Client, namespace: &str) -> anyhow::Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut list = api.list(&ListParams::default()).await?.items;
    list.sort_by_key(event_time);
    Ok(list)
}

/// Sort key of an event: its latest time as RFC 3339 text.
pub fn event_time(event: &Event) -> String {
    event
        .event_time
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0.to_string()))
        .unwrap_or_default()
}

/// One line per event: `type reason kind/name: message`.
pub fn event_line(event: &Event) -> String {
    format!(
        "{} {} {}/{}: {}",
        event.type_.clone().unwrap_or_default(),
        event.reason.clone().unwrap_or_default(),
        event.involved_object.kind.clone().unwrap_or_default(),
        event.involved_object.name.clone().unwrap_or_default(),
        event.message.clone().unwrap_or_default()
    )
}

/// The newest `limit` events as text.
pub async fn events_report(client: &Client, namespace: &str, limit: usize) -> String {
    match events(client, namespace).await {
        Ok(list) => {
            let skip = list.len().saturating_sub(limit);
            let mut out = format!("Events ({} total, newest {limit}):\n", list.len());
            for event in list.iter().skip(skip) {
                let _ = writeln!(out, "  {}", event_line(event));
            }
            out
        }
        Err(error) => format!("Events: list failed: {error}"),
    }
}

/// Events about the SessionCluster `name`, oldest first.
pub async fn cluster_events(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<Event>> {
    Ok(events(client, namespace)
        .await?
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("SessionCluster")
                && e.involved_object.name.as_deref() == Some(name)
        })
        .collect())
}
