//! Probes and `/v1/status`: liveness, readiness (synced with the peers, recovered from disc)
//! and the node's status document, which the operator reads (docs/contract.md).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::node::NodeState;

/// `/v1/status` body (docs/contract.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `--node-name`.
    pub node_name: String,
    /// Per-process id.
    pub node_id: String,
    /// Crate version.
    pub version: String,
    /// `loading`, `ready`, `leaving` or `left`.
    pub state: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Keys in the keyspace.
    pub keys: u64,
    /// Memory accounting.
    pub memory: MemoryReport,
    /// Replication peers (none on a single node).
    pub peers: Vec<PeerReport>,
    /// Storage mode.
    pub storage: StorageReport,
}

/// Memory part of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    /// Estimated bytes used.
    pub used_bytes: u64,
    /// Limit (0 = unlimited).
    pub limit_bytes: u64,
    /// Alarm threshold.
    pub high_watermark_bytes: u64,
    /// Alarm clear threshold.
    pub low_watermark_bytes: u64,
    /// Whether the alarm is raised.
    pub alarm: bool,
    /// Eviction policy name.
    pub eviction_policy: String,
}

/// A peer in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    /// The peer's node name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Whether connected.
    pub connected: bool,
    /// Ops not yet acknowledged.
    pub lag_ops: u64,
}

/// Storage part of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageReport {
    /// `ram` or `disc`.
    pub mode: String,
    /// Disc mode only: the data directory and its usage.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub disc: Option<DiscReport>,
}

/// Disc-mode part of [`StorageReport`] (absent in RAM mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscReport {
    /// `--data-dir`.
    pub data_dir: String,
    /// `always` or `everysec`.
    pub fsync: String,
    /// Bytes of snapshots and log segments.
    pub disc_bytes: u64,
    /// 99th percentile fdatasync latency (µs), absent before the first fdatasync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_p99_micros: Option<u64>,
    /// When the last snapshot was written (Unix ms), 0 = none since start.
    pub last_snapshot_unix_ms: u64,
    /// Whether the log is failing (writes answer `MISCONF`).
    pub failing: bool,
    /// Recovery from the data directory at start: in progress while `state` is `loading`,
    /// then its final counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,
}

/// Recovery part of [`DiscReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStatus {
    /// `pending`, `reading` (snapshot and log), `loading` (into memory) or `done`.
    pub phase: String,
    /// Bytes of snapshot and log read.
    pub bytes_read: u64,
    /// Bytes of snapshot and log to read.
    pub bytes_total: u64,
    /// Records loaded into memory.
    pub records_loaded: u64,
    /// Records to load into memory (known once reading is done).
    pub records_total: u64,
}

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

/// Builds the status document.
pub fn node_status(state: &NodeState) -> NodeStatus {
    let memory = state.engine.memory();
    NodeStatus {
        node_name: state.node_name.clone(),
        node_id: state.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        state: state.lifecycle().as_str().to_string(),
        uptime_seconds: state.uptime_seconds(),
        keys: state.engine.len(),
        memory: MemoryReport {
            used_bytes: memory.used_bytes,
            limit_bytes: memory.limit_bytes,
            high_watermark_bytes: memory.high_watermark_bytes,
            low_watermark_bytes: memory.low_watermark_bytes,
            alarm: memory.alarm,
            eviction_policy: memory.policy.as_str().to_string(),
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
