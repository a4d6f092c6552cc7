//! Probes and `/v1/status`: liveness, readiness (synced with the peers, recovered from disc)
//! and the node's status document, which the operator reads (docs/contract.md). The document's
//! type lives in the API crate (`sessionstore_api::node_status`), which the operator
//! deserialises with, so the two sides cannot drift apart.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub use sessionstore_api::node_status::{
    data_origin, DiscReport, MemoryReport, NodeStatus, PeerReport, RecoveryStatus, StorageReport,
};

use crate::node::NodeState;

fn recovery_status(state: &NodeState) -> RecoveryStatus {
    let progress = state.recovery.snapshot();
    RecoveryStatus {
        phase: progress.phase.as_str().to_string(),
        bytes_read: progress.bytes_read,
        bytes_total: progress.bytes_total,
        records_loaded: progress.records_loaded,
        records_total: progress.records_total,
    }
}

/// The storage report of a node.
pub fn storage_report(state: &NodeState) -> StorageReport {
    if state.config.storage_mode != crate::config::StorageMode::Disc {
        return StorageReport {
            mode: "ram".to_string(),
            disc: None,
        };
    }
    // While recovering, the log is not open yet: only the recovery progress is known.
    let metrics = state
        .persistence()
        .map(|persistence| persistence.metrics().snapshot())
        .unwrap_or_default();
    StorageReport {
        mode: "disc".to_string(),
        disc: Some(DiscReport {
            data_dir: state.config.data_dir.display().to_string(),
            fsync: match state.config.fsync {
                crate::config::Fsync::Always => "always",
                crate::config::Fsync::Everysec => "everysec",
            }
            .to_string(),
            disc_bytes: metrics.disc_bytes,
            fsync_p99_micros: metrics.fsync_quantile_micros(0.99),
            last_snapshot_unix_ms: metrics.last_snapshot_unix_ms,
            failing: metrics.failing,
            recovery: Some(recovery_status(state)),
        }),
    }
}

/// How the node got the data it started with: records recovered from disc, else a snapshot of
/// at least one record from a peer (only a starting node asks for one), else nothing. A RAM
/// cluster whose every node restarted at once reports `empty` everywhere, which is how the
/// operator tells that the sessions were lost.
fn data_origin(state: &NodeState) -> &'static str {
    let recovered = state.recovery.snapshot().records_loaded;
    let streamed = state.replication().map_or(0, |replication| {
        replication.metrics().snapshot().snapshot_records_received
    });
    if recovered > 0 {
        data_origin::DISC
    } else if streamed > 0 {
        data_origin::PEER
    } else {
        data_origin::EMPTY
    }
}

/// Builds the status document.
pub fn node_status(state: &NodeState) -> NodeStatus {
    let memory = state.engine.memory();
    let readings = state.memory.last();
    NodeStatus {
        node_name: state.node_name.clone(),
        node_id: state.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        state: state.lifecycle().as_str().to_string(),
        uptime_seconds: state.uptime_seconds(),
        keys: state.engine.len(),
        data_origin: Some(data_origin(state).to_string()),
        memory: MemoryReport {
            used_bytes: memory.used_bytes,
            limit_bytes: memory.limit_bytes,
            high_watermark_bytes: memory.high_watermark_bytes,
            low_watermark_bytes: memory.low_watermark_bytes,
            alarm: memory.alarm,
            eviction_policy: memory.policy.as_str().to_string(),
            reserve_bytes: memory.reserve_bytes,
            data_bytes: memory.data_bytes,
            rss_bytes: readings.process_rss_bytes,
            cgroup_bytes: readings.cgroup_bytes,
            peers_in_alarm: state
                .replication()
                .map(|replication| replication.peers_in_memory_alarm())
                .unwrap_or_default(),
        },
        peers: state
            .replication()
            .map(|replication| {
                replication
                    .peers()
                    .into_iter()
                    .map(|peer| PeerReport {
                        name: peer.name,
                        address: peer.address,
                        connected: peer.connected,
                        lag_ops: peer.lag_ops,
                        clock_skew_ms: peer.clock_skew_ms,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        storage: storage_report(state),
    }
}

pub(super) async fn healthz() -> &'static str {
    "ok"
}

pub(super) async fn readyz(State(state): State<Arc<NodeState>>) -> Response {
    match state.not_ready_reason() {
        None => (StatusCode::OK, "ready").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

pub(super) async fn status(State(state): State<Arc<NodeState>>) -> Json<NodeStatus> {
    Json(node_status(&state))
}
