//! Replication's counters and gauges in the Prometheus text format, appended to the node's
//! `/metrics` ([`render`]); kept apart from [`super::metrics`] because it reads the whole
//! handle (peers, log head, state), which itself holds the counters.

use super::handle::Replication;
use super::wire::NodeState;

/// The replication counters and gauges in Prometheus text format (appended to the node's
/// `/metrics`).
pub fn render(replication: &Replication) -> String {
    use std::fmt::Write;
    let snapshot = replication.metrics().snapshot();
    let peers = replication.peers();
    let members = peers.iter().filter(|peer| !peer.left).count();
    let max_lag = peers.iter().map(|peer| peer.lag_ops).max().unwrap_or(0);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let suffix = if kind == "counter" { "_total" } else { "" };
        let _ = write!(
            out,
            "# HELP store_node_replication_{name} {help}\n# TYPE store_node_replication_{name} {kind}\nstore_node_replication_{name}{suffix} {value}\n"
        );
    };
    metric(
        "peers_up",
        "gauge",
        "Peers with an established link.",
        snapshot.peers_up,
    );
    metric(
        "peers",
        "gauge",
        "Discovered peers that have not left.",
        members as u64,
    );
    metric(
        "lag_ops",
        "gauge",
        "Largest number of local writes a peer is not known to hold.",
        max_lag,
    );
    let (log_items, log_bytes) = replication.log_len_and_bytes();
    metric(
        "log_items",
        "gauge",
        "Items the op-log retains (bounded by count and bytes; a peer behind its start gets a gap that anti-entropy closes).",
        log_items as u64,
    );
    metric(
        "log_bytes",
        "gauge",
        "Approximate bytes the op-log retains.",
        log_bytes as u64,
    );
    metric(
        "log_head",
        "gauge",
        "Sequence number of the last local write submitted.",
        replication.head(),
    );
    metric(
        "ready",
        "gauge",
        "1 when this node is synced with its peers and serving.",
        u64::from(replication.state() == NodeState::Ready),
    );
    metric(
        "records_sent",
        "counter",
        "Records pushed to peers.",
        snapshot.records_sent,
    );
    metric(
        "records_received",
        "counter",
        "Records received from peers.",
        snapshot.records_received,
    );
    metric(
        "touches_sent",
        "counter",
        "Coalesced touches pushed to peers.",
        snapshot.touches_sent,
    );
    metric(
        "touches_received",
        "counter",
        "Touches received from peers.",
        snapshot.touches_received,
    );
    metric(
        "bytes_sent",
        "counter",
        "Bytes sent to peers.",
        snapshot.bytes_sent,
    );
    metric(
        "bytes_received",
        "counter",
        "Bytes received from peers.",
        snapshot.bytes_received,
    );
    metric(
        "repairs_applied",
        "counter",
        "Records repaired here by anti-entropy.",
        snapshot.repairs_applied,
    );
    metric(
        "repairs_sent",
        "counter",
        "Records sent to peers by anti-entropy.",
        snapshot.repairs_sent,
    );
    metric(
        "anti_entropy_rounds",
        "counter",
        "Completed anti-entropy rounds.",
        snapshot.anti_entropy_rounds,
    );
    metric(
        "snapshots_served",
        "counter",
        "Snapshots streamed to bootstrapping peers.",
        snapshot.snapshots_served,
    );
    metric(
        "snapshot_records_received",
        "counter",
        "Records received in bootstrap snapshots.",
        snapshot.snapshot_records_received,
    );
    metric(
        "tombstones_collected",
        "counter",
        "Tombstones collected after the grace period.",
        snapshot.tombstones_collected,
    );
    metric(
        "links_dropped",
        "counter",
        "Links to discovered peers that went down (timed out, closed or failed) and were redialled.",
        snapshot.links_dropped,
    );
    metric(
        "outbox_messages",
        "gauge",
        "Messages queued for the peers in every link's outbox (each bounded).",
        replication.outbox_messages(),
    );
    metric(
        "outbox_overflows",
        "counter",
        "Links closed because their request queue overflowed (the peer did not read).",
        snapshot.outbox_overflows,
    );
    metric(
        "requests_queued",
        "gauge",
        "Peers' digest, snapshot and repair requests queued or being answered.",
        replication.requests_queued(),
    );
    metric(
        "requests_refused",
        "counter",
        "Links closed because the peer sent a second digest or snapshot request while one was outstanding.",
        snapshot.requests_refused,
    );
    metric(
        "records_refused_clock_skew",
        "counter",
        "Records refused because their stamp is beyond the clock drift bound.",
        snapshot.records_refused_clock_skew,
    );
    let _ = write!(
        out,
        "# HELP store_node_replication_clock_correction_ms Milliseconds added to this node's clock to stamp by its peers' majority time (0: its clock agrees).\n# TYPE store_node_replication_clock_correction_ms gauge\nstore_node_replication_clock_correction_ms {}\n",
        replication.clock().correction_ms()
    );
    let _ = writeln!(
        out,
        "# HELP store_node_replication_peer_clock_skew_ms A peer's wall clock minus this node's, measured from heartbeats.\n# TYPE store_node_replication_peer_clock_skew_ms gauge"
    );
    for peer in &peers {
        if let Some(skew) = peer.clock_skew_ms {
            let name = peer.name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "store_node_replication_peer_clock_skew_ms{{peer=\"{name}\"}} {skew}"
            );
        }
    }
    out
}
