//! The `GET /v1/status` document of a store-node (docs/contract.md): store-node serialises it and
//! the operator reads it into `status.members` and its conditions. One set of types for both
//! sides, so a renamed or retyped field fails to compile rather than to parse.
//!
//! Fields the operator does not read have serde defaults: a node that leaves them out (an older
//! or newer build during a rollout) still reports its name, state, memory and peers. Unknown
//! fields are ignored for the same reason.

use serde::{Deserialize, Serialize};

/// The values of [`NodeStatus::state`], in lifecycle order.
pub mod state {
    /// Recovering from disc or syncing from peers; not serving yet.
    pub const LOADING: &str = "loading";
    /// Serving and replicating.
    pub const READY: &str = "ready";
    /// Handing off before a scale-down.
    pub const LEAVING: &str = "leaving";
    /// Handed off; the pod may be removed.
    pub const LEFT: &str = "left";
}

/// The values of [`NodeStatus::data_origin`].
pub mod data_origin {
    /// The node started with nothing: no data on disc, and no peer had any to send (the first
    /// node of a new cluster, or every node of a RAM cluster restarted at once).
    pub const EMPTY: &str = "empty";
    /// The node streamed a snapshot of at least one record from a peer.
    pub const PEER: &str = "peer";
    /// The node recovered records from its data directory.
    pub const DISC: &str = "disc";
}

/// `GET /v1/status` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node's `--node-name` (its pod name).
    pub node_name: String,
    /// Per-process id: a restarted node reports a new one.
    #[serde(default)]
    pub node_id: String,
    /// store-node's crate version.
    #[serde(default)]
    pub version: String,
    /// One of the [`state`] values.
    pub state: String,
    /// Seconds since the process started.
    #[serde(default)]
    pub uptime_seconds: u64,
    /// Keys in the keyspace.
    #[serde(default)]
    pub keys: u64,
    /// How the node got the data it started serving with, one of the [`data_origin`] values;
    /// final once `state` is `ready`. The operator tells a cluster that lost every session by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_origin: Option<String>,
    /// Memory accounting.
    pub memory: MemoryReport,
    /// Replication peers (none on a single node).
    #[serde(default)]
    pub peers: Vec<PeerReport>,
    /// Storage mode, and the data directory's state in disc mode.
    #[serde(default)]
    pub storage: StorageReport,
}

/// Memory part of [`NodeStatus`] (docs/memory.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    /// Used memory, what the watermarks compare: the node's sampled footprint (what the kernel
    /// counts against the limit) plus the growth accounted since the sample; INFO's
    /// `used_memory` and `store_node_memory_used_bytes` are the same figure.
    pub used_bytes: u64,
    /// Limit in bytes (0 = unlimited).
    pub limit_bytes: u64,
    /// The alarm is raised above this many bytes.
    #[serde(default)]
    pub high_watermark_bytes: u64,
    /// A raised alarm clears below this many bytes.
    #[serde(default)]
    pub low_watermark_bytes: u64,
    /// True above the high watermark until below the low one.
    pub alarm: bool,
    /// Eviction policy, as spelled in `--eviction-policy`.
    #[serde(default)]
    pub eviction_policy: String,
    /// The part of the limit kept for transient peaks; the watermarks are fractions of
    /// `limitBytes - reserveBytes`.
    #[serde(default)]
    pub reserve_bytes: u64,
    /// The estimated bytes of the data alone (keys, values, per-key overhead).
    #[serde(default)]
    pub data_bytes: u64,
    /// The process's resident memory, file pages included (INFO's `used_memory_rss`).
    #[serde(default)]
    pub rss_bytes: u64,
    /// The memory cgroup's charge without file pages, when the node's cgroup has a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_bytes: Option<u64>,
    /// Connected peers that announce their memory alarm; while any does, this node refuses
    /// growth writes too (or evicts), since it replicates to them.
    #[serde(default)]
    pub peers_in_alarm: Vec<String>,
}

/// A peer in [`NodeStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    /// The peer's node name.
    pub name: String,
    /// `host:port` of its peer port.
    #[serde(default)]
    pub address: String,
    /// Whether the replication connection is up.
    pub connected: bool,
    /// Operations sent to the peer and not yet acknowledged.
    #[serde(default)]
    pub lag_ops: u64,
    /// The peer's wall clock minus this node's, in ms, measured from heartbeats; absent
    /// before the first measurement (and from nodes that do not measure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_ms: Option<i64>,
}

/// Storage part of [`NodeStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageReport {
    /// `ram` or `disc`.
    pub mode: String,
    /// Disc mode only: the data directory and its usage, as fields beside `mode`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub disc: Option<DiscReport>,
}

/// Disc-mode part of [`StorageReport`] (absent in RAM mode). No field has a default: with the
/// flattening, a RAM-mode `storage` must fail to read as a `DiscReport`, so `disc` stays `None`.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A document exactly as store-node serves it, read and written back: every field name,
    /// casing and optional field survives unchanged.
    fn round_trip(document: serde_json::Value) -> Result<NodeStatus, serde_json::Error> {
        let status: NodeStatus = serde_json::from_value(document.clone())?;
        assert_eq!(serde_json::to_value(&status)?, document);
        Ok(status)
    }

    #[test]
    fn a_disc_node_document_round_trips_exactly() -> Result<(), serde_json::Error> {
        let status = round_trip(serde_json::json!({
            "nodeName": "demo-0",
            "nodeId": "demo-0-7f3a",
            "version": "0.1.0",
            "state": "ready",
            "uptimeSeconds": 120,
            "keys": 42,
            "dataOrigin": "disc",
            "memory": {
                "usedBytes": 1048576,
                "limitBytes": 268435456,
                "highWatermarkBytes": 188743680,
                "lowWatermarkBytes": 165150720,
                "alarm": true,
                "evictionPolicy": "noeviction",
                "reserveBytes": 33554432,
                "dataBytes": 524288,
                "rssBytes": 9437184,
                "cgroupBytes": 1048576,
                "peersInAlarm": ["demo-2"]
            },
            "peers": [
                {"name": "demo-1", "address": "10.244.0.7:7379", "connected": true, "lagOps": 3},
                {"name": "demo-2", "address": "10.244.0.8:7379", "connected": false, "lagOps": 0}
            ],
            "storage": {
                "mode": "disc",
                "dataDir": "/data",
                "fsync": "everysec",
                "discBytes": 65536,
                "fsyncP99Micros": 850,
                "lastSnapshotUnixMs": 1733000000000u64,
                "failing": false,
                "recovery": {
                    "phase": "done",
                    "bytesRead": 65536,
                    "bytesTotal": 65536,
                    "recordsLoaded": 42,
                    "recordsTotal": 42
                }
            }
        }))?;
        assert_eq!(status.state, state::READY);
        assert_eq!(status.data_origin.as_deref(), Some(data_origin::DISC));
        assert_eq!(status.memory.limit_bytes, 268_435_456);
        assert_eq!(status.peers[0].lag_ops, 3);
        let disc = status
            .storage
            .disc
            .as_ref()
            .map(|d| (d.fsync_p99_micros, &d.data_dir));
        assert_eq!(disc, Some((Some(850), &"/data".to_owned())));
        Ok(())
    }

    #[test]
    fn a_ram_node_document_round_trips_without_disc_fields() -> Result<(), serde_json::Error> {
        let status = round_trip(serde_json::json!({
            "nodeName": "web-2",
            "nodeId": "web-2-01c9",
            "version": "0.1.0",
            "state": "loading",
            "uptimeSeconds": 0,
            "keys": 0,
            "memory": {
                "usedBytes": 0,
                "limitBytes": 0,
                "highWatermarkBytes": 0,
                "lowWatermarkBytes": 0,
                "alarm": false,
                "evictionPolicy": "volatile-lru",
                "reserveBytes": 0,
                "dataBytes": 0,
                "rssBytes": 0,
                "peersInAlarm": []
            },
            "peers": [],
            "storage": {"mode": "ram"}
        }))?;
        assert_eq!(status.storage.disc, None);
        Ok(())
    }

    #[test]
    fn a_disc_node_before_its_first_fsync_and_recovery_leaves_them_out(
    ) -> Result<(), serde_json::Error> {
        let status = round_trip(serde_json::json!({
            "nodeName": "demo-0",
            "nodeId": "demo-0-7f3a",
            "version": "0.1.0",
            "state": "loading",
            "uptimeSeconds": 1,
            "keys": 0,
            "memory": {
                "usedBytes": 0,
                "limitBytes": 268435456,
                "highWatermarkBytes": 214748364,
                "lowWatermarkBytes": 187904819,
                "alarm": false,
                "evictionPolicy": "noeviction",
                "reserveBytes": 33554432,
                "dataBytes": 0,
                "rssBytes": 8388608,
                "peersInAlarm": []
            },
            "peers": [],
            "storage": {
                "mode": "disc",
                "dataDir": "/data",
                "fsync": "always",
                "discBytes": 0,
                "lastSnapshotUnixMs": 0,
                "failing": true
            }
        }))?;
        let disc = status.storage.disc.as_ref();
        assert_eq!(
            disc.map(|d| (d.fsync_p99_micros, d.failing)),
            Some((None, true))
        );
        assert_eq!(disc.and_then(|d| d.recovery.as_ref()), None);
        Ok(())
    }

    #[test]
    fn the_operator_reads_a_document_with_only_what_it_needs() -> Result<(), serde_json::Error> {
        let status: NodeStatus = serde_json::from_value(serde_json::json!({
            "nodeName": "demo-1",
            "state": "leaving",
            "memory": {"usedBytes": 10, "limitBytes": 100, "alarm": false},
            "peers": [{"name": "demo-0", "connected": true}],
            "addedLater": {"ignored": true}
        }))?;
        assert_eq!(
            status,
            NodeStatus {
                node_name: "demo-1".into(),
                state: state::LEAVING.into(),
                memory: MemoryReport {
                    used_bytes: 10,
                    limit_bytes: 100,
                    ..MemoryReport::default()
                },
                peers: vec![PeerReport {
                    name: "demo-0".into(),
                    connected: true,
                    ..PeerReport::default()
                }],
                ..NodeStatus::default()
            }
        );
        // Without these the document is not a node status.
        for required in ["nodeName", "state", "memory"] {
            let mut document = serde_json::to_value(&status)?;
            if let Some(fields) = document.as_object_mut() {
                fields.remove(required);
            }
            assert!(
                serde_json::from_value::<NodeStatus>(document).is_err(),
                "{required} is required"
            );
        }
        Ok(())
    }
}
