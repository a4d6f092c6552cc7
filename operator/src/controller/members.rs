//! A reconcile step: polling the nodes' `/v1/status` (what `status.members` and the Clustered and
//! MemoryPressure conditions are made of) and keeping the per-node memory gauges.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use sessionstore_api::constants::HTTP_PORT;
use sessionstore_api::names;
use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::pods::pod_is_ready;

use super::context::Context;
use crate::node_client::{NodeAddress, NodeTls};
use crate::resources::certificate::pod_server_name;
use crate::validate::ValidatedCluster;

/// `ip:port` of a pod's HTTP port (`[ip]:port` for IPv6), once the pod has an IP.
pub(super) fn node_address(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
    Some(if ip.contains(':') {
        format!("[{ip}]:{HTTP_PORT}")
    } else {
        format!("{ip}:{HTTP_PORT}")
    })
}

/// How the operator reaches pod `pod` of the cluster: its HTTP port, over TLS verified against
/// the cluster's CA for the pod's DNS name when `tls` is set.
pub(super) fn node_target(
    validated: &ValidatedCluster,
    pod: &Pod,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Option<NodeAddress> {
    Some(NodeAddress {
        socket: node_address(pod)?,
        tls: tls.map(|config| NodeTls {
            server_name: pod_server_name(&validated.name, &validated.namespace, &pod.name_any()),
            config: config.clone(),
        }),
    })
}

/// The nodes polled: their addresses, and the reports of those that answered.
pub(super) struct Polled {
    /// Every ready pod below the StatefulSet's replicas.
    pub(super) addresses: Vec<NodeAddress>,
    /// What the nodes that answered reported.
    pub(super) nodes: Vec<NodeStatus>,
}

/// Polls `/v1/status` of every ready pod below `replicas` and records their memory gauges;
/// nodes that do not answer are left out.
pub(super) async fn poll(
    ctx: &Context,
    validated: &ValidatedCluster,
    pods: &[Pod],
    replicas: i32,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Polled {
    let addresses: Vec<NodeAddress> = pods
        .iter()
        .filter(|pod| pod_is_ready(pod) && pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            names::ordinal_of(&validated.name, &pod.name_any()).is_some_and(|o| o < replicas)
        })
        .filter_map(|pod| node_target(validated, pod, tls))
        .collect();
    let nodes = poll_members(ctx, &addresses, &validated.name).await;
    record_member_metrics(ctx, &validated.namespace, &validated.name, replicas, &nodes);
    Polled { addresses, nodes }
}

async fn poll_members(ctx: &Context, addresses: &[NodeAddress], name: &str) -> Vec<NodeStatus> {
    let calls = addresses
        .iter()
        .map(|address| ctx.node_api.status(address.clone()));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(|result| match result {
            Ok(status) => Some(status),
            Err(error) => {
                tracing::debug!(cluster = %name, %error, "status poll failed");
                None
            }
        })
        .collect()
}

/// Sets the gauges of every polled node and removes those of nodes a scale-down removed (a node
/// that merely did not answer this time keeps its last value).
fn record_member_metrics(
    ctx: &Context,
    namespace: &str,
    name: &str,
    replicas: i32,
    members: &[NodeStatus],
) {
    for member in members {
        ctx.metrics.set_node_memory(
            namespace,
            name,
            &member.node_name,
            member.memory.used_bytes,
            member.memory.limit_bytes,
            member.memory.alarm,
        );
    }
    ctx.metrics.retain_nodes(namespace, name, |node| {
        names::ordinal_of(name, node).is_some_and(|ordinal| ordinal < replicas)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with_ip(ip: Option<&str>) -> Pod {
        match serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0"},
            "status": {"podIP": ip},
        })) {
            Ok(pod) => pod,
            Err(error) => panic!("bad test pod: {error}"),
        }
    }

    #[test]
    fn nodes_are_addressed_on_their_http_port() {
        assert_eq!(
            node_address(&pod_with_ip(Some("10.0.0.7"))).as_deref(),
            Some("10.0.0.7:8080")
        );
        assert_eq!(
            node_address(&pod_with_ip(Some("fd00::7"))).as_deref(),
            Some("[fd00::7]:8080")
        );
        assert_eq!(node_address(&pod_with_ip(None)), None);
    }
}
