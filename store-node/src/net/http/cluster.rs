//! `/v1/cluster` (every member as this node sees it), `POST /v1/cluster/leave` (the operator's
//! scale-down hand-off) and the test-only fault switch.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{bearer, error};
use crate::node::{Lifecycle, NodeState};
use crate::persistence::WriterFault;

pub(super) async fn cluster(State(state): State<Arc<NodeState>>) -> Json<serde_json::Value> {
    let address = format!(
        "{}:{}",
        state
            .config
            .advertise_address
            .clone()
            .unwrap_or_else(|| state.config.bind.to_string()),
        state.config.peer_port
    );
    let address = state
        .replication()
        .map(|replication| replication.local_address().to_string())
        .filter(|_| state.config.advertise_address.is_none())
        .unwrap_or(address);
    let mut members = vec![serde_json::json!({
        "name": state.node_name,
        "nodeId": state.node_id,
        "address": address,
        "state": state.lifecycle().as_str(),
        "self": true,
        "connected": true,
        "lagOps": 0,
        "digest": state.replication().map(|_| digest_text(&state)),
    })];
    if let Some(replication) = state.replication() {
        members.extend(replication.peers().into_iter().map(|peer| {
            serde_json::json!({
                "name": peer.name,
                "address": peer.address,
                "state": peer.state.map(|peer_state| peer_state.as_str()),
                "self": false,
                "connected": peer.connected,
                "lagOps": peer.lag_ops,
                "lastSeenMsAgo": peer.last_seen_ms_ago,
                "left": peer.left,
            })
        }));
    }
    Json(serde_json::json!({ "members": members }))
}

/// One number over every replication bucket digest, in hex: equal on two nodes holding the
/// same versions of every key (tests compare it to prove convergence).
fn digest_text(state: &NodeState) -> String {
    let digest = state
        .engine
        .bucket_digests()
        .iter()
        .enumerate()
        .fold(0u64, |acc, (index, sum)| {
            acc.rotate_left(7) ^ sum.wrapping_add(index as u64)
        });
    format!("{digest:016x}")
}

/// `POST /v1/cluster/leave`: only with the operator's token, whether or not clients need a
/// password (leaving makes a node stop serving: no client may ask for it).
pub(super) async fn leave(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    if !state.security.has_operator_token() {
        return error(
            StatusCode::FORBIDDEN,
            "leaving needs the operator's token, and this node has none (--operator-token-file)",
        )
        .into_response();
    }
    if !bearer(&headers).is_some_and(|token| state.security.is_operator_token(token)) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong operator token").into_response();
    }
    if matches!(state.lifecycle(), Lifecycle::Leaving | Lifecycle::Left) {
        return StatusCode::ACCEPTED.into_response();
    }
    // Unready at once; the flush runs in the background and ends in `left`.
    state.set_lifecycle(Lifecycle::Leaving);
    let timeout = std::time::Duration::from_secs(state.config.shutdown_timeout);
    let leaving = state.clone();
    tokio::spawn(async move { crate::node::cluster::leave_cluster(&leaving, timeout).await });
    StatusCode::ACCEPTED.into_response()
}

/// TEST ONLY (`--test-faults`): `{"blocked": ["host:port", ...]}` cuts replication links to
/// those peer addresses (an empty list heals); `{"disc": "stall" | "fail" | "none"}` stalls the
/// write-ahead log's writer (a slow disc), makes its writes fail (a full disc) or heals it
/// (disc mode). Either key may be left out. 404 unless the flag is set, 400 for an unknown
/// disc fault.
pub(super) async fn test_faults(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let Some(faults) = state.test_faults.get() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(blocked) = body.get("blocked").and_then(|blocked| blocked.as_array()) {
        let blocked: Vec<String> = blocked
            .iter()
            .filter_map(|address| address.as_str().map(str::to_string))
            .collect();
        tracing::warn!(?blocked, "test fault: blocking replication peers");
        faults.set_blocked(&blocked);
    }
    let disc = body.get("disc").and_then(|disc| disc.as_str());
    if let Some(disc) = disc {
        let fault = match disc {
            "stall" => WriterFault::Stall,
            "fail" => WriterFault::Fail,
            "none" => WriterFault::None,
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown disc fault {other:?}: stall, fail or none"),
                )
                .into_response()
            }
        };
        let Some(persistence) = state.persistence() else {
            return error(StatusCode::BAD_REQUEST, "not in disc mode").into_response();
        };
        tracing::warn!(fault = disc, "test fault: write-ahead log");
        persistence.inject_fault(fault);
    }
    Json(serde_json::json!({ "blocked": faults.blocked(), "disc": disc })).into_response()
}
