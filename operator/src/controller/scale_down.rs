//! A reconcile step: a safe scale-down. Nodes leave (hand off and confirm) before the StatefulSet
//! is lowered, so the pods it removes hold nothing only they have; a node that does not confirm
//! within `leave_timeout` does not block the scale-down forever.

use std::time::Duration;

use kube::ResourceExt;
use sessionstore_api::constants::reason;
use sessionstore_api::node_status::state;
use sessionstore_api::{names, ScaleDownStatus, SessionCluster, SessionClusterStatus};

use super::context::{key, now, Context};
use super::error::Error;
use super::inputs::Live;
use super::members::node_target;
use crate::validate::ValidatedCluster;

/// The StatefulSet's replicas for this reconcile.
pub(super) struct Replicas {
    /// What the StatefulSet is applied with: above the spec while nodes are leaving.
    pub(super) statefulset: i32,
    /// The scale-down waiting for leaving nodes, for the status.
    pub(super) scale_down: Option<ScaleDownStatus>,
}

impl Replicas {
    /// The spec's count, nothing in progress.
    fn settled(desired: i32) -> Self {
        Self {
            statefulset: desired,
            scale_down: None,
        }
    }
}

/// Decides the StatefulSet's replicas. While scaling down, asks each leaving node to leave and
/// keeps the old count until every leaving node reports `left` (or is gone), or until
/// `leave_timeout` passed. `operator_token` is what the nodes' `POST /v1/cluster/leave`
/// requires (`<name>-operator-token`).
pub(super) async fn replicas(
    cluster: &SessionCluster,
    ctx: &Context,
    validated: &ValidatedCluster,
    live: &Live,
    old: &SessionClusterStatus,
    operator_token: Option<&str>,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Replicas, Error> {
    let desired = validated.replicas;
    let current = live.statefulset_replicas(desired);
    if desired >= current {
        return Ok(Replicas::settled(desired));
    }
    let leaving: Vec<String> = (desired..current)
        .map(|i| names::pod(&validated.name, i))
        .collect();
    let previous = old
        .scale_down
        .clone()
        .filter(|s| s.target_replicas == desired && s.leaving == leaving);
    let mut pending = Vec::new();
    for pod_name in &leaving {
        let Some(address) = live
            .pods
            .iter()
            .find(|p| p.name_any() == *pod_name)
            .and_then(|pod| node_target(validated, pod, tls))
        else {
            continue;
        };
        let node_state = match ctx.node_api.status(address.clone()).await {
            Ok(node) => node.state,
            // A node that does not answer serves no client either.
            Err(_) => continue,
        };
        if node_state == state::LEFT {
            continue;
        }
        if node_state != state::LEAVING {
            let outcome = ctx
                .node_api
                .leave(address.clone(), operator_token.map(str::to_owned))
                .await;
            match outcome {
                Ok(()) => {
                    tracing::info!(cluster = %key(cluster), node = %pod_name, "asked node to leave")
                }
                Err(error) => {
                    tracing::warn!(cluster = %key(cluster), node = %pod_name, %error, "leave request failed")
                }
            }
        }
        pending.push(pod_name.clone());
    }
    let started_at = previous
        .as_ref()
        .map(|p| p.started_at.clone())
        .unwrap_or_else(|| now().0.to_string());
    if previous.is_none() && !pending.is_empty() {
        ctx.publish(
            cluster,
            false,
            reason::SCALING_DOWN,
            format!(
                "asked {} to leave before scaling from {current} to {desired}",
                pending.join(", ")
            ),
        )
        .await;
    }
    if pending.is_empty() {
        return Ok(Replicas::settled(desired));
    }
    let elapsed = started_at
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .and_then(|t| {
            k8s_openapi::jiff::Timestamp::now()
                .duration_since(t)
                .try_into()
                .ok()
        })
        .unwrap_or(Duration::ZERO);
    if elapsed >= ctx.config.leave_timeout {
        ctx.publish(
            cluster,
            true,
            reason::LEAVE_TIMEOUT,
            format!(
                "{} did not confirm leaving within {}s; scaling down anyway",
                pending.join(", "),
                ctx.config.leave_timeout.as_secs()
            ),
        )
        .await;
        return Ok(Replicas::settled(desired));
    }
    Ok(Replicas {
        statefulset: current,
        scale_down: Some(ScaleDownStatus {
            target_replicas: desired,
            leaving,
            started_at,
        }),
    })
}
