//! Replication counters as plain atomics, read by `/metrics` (see [`super::prometheus`]) and
//! `INFO replication`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges of one node's replication.
#[derive(Debug, Default)]
pub struct ReplicationMetrics {
    /// Records pushed to peers in batches (each peer counts).
    pub records_sent: AtomicU64,
    /// Touches pushed to peers in batches (each peer counts).
    pub touches_sent: AtomicU64,
    /// Records received in batches.
    pub records_received: AtomicU64,
    /// Touches received in batches.
    pub touches_received: AtomicU64,
    /// Frame bytes sent to peers.
    pub bytes_sent: AtomicU64,
    /// Frame bytes received from peers.
    pub bytes_received: AtomicU64,
    /// Records applied by anti-entropy repairs (received and changed something).
    pub repairs_applied: AtomicU64,
    /// Records sent to repair a peer.
    pub repairs_sent: AtomicU64,
    /// Anti-entropy rounds completed (initiated here).
    pub anti_entropy_rounds: AtomicU64,
    /// Snapshots served to bootstrapping peers.
    pub snapshots_served: AtomicU64,
    /// Records received while bootstrapping from a snapshot.
    pub snapshot_records_received: AtomicU64,
    /// Tombstones collected.
    pub tombstones_collected: AtomicU64,
    /// Peers with an established outgoing connection (gauge).
    pub peers_up: AtomicU64,
    /// Records not replicated because they exceed the frame size limit.
    pub records_too_large: AtomicU64,
    /// Outgoing links that went down while their peer was still discovered (timed out, closed
    /// or failed); each is redialled.
    pub links_dropped: AtomicU64,
    /// Records refused because their stamp is beyond the clock drift bound.
    pub records_refused_clock_skew: AtomicU64,
    /// Links closed because their urgent queue overflowed (the peer did not read).
    pub outbox_overflows: AtomicU64,
    /// Links closed because the peer broke the request rules (a second digest or snapshot
    /// request while one is outstanding).
    pub requests_refused: AtomicU64,
    /// Peers' requests queued or being answered on every inbound link (gauge).
    pub requests_queued: AtomicU64,
    /// When (cluster ms) a refusal was last logged: one line per 10 s at most.
    pub(crate) refusal_logged_ms: AtomicU64,
}

/// A plain copy of [`ReplicationMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// See [`ReplicationMetrics::records_sent`].
    pub records_sent: u64,
    /// See [`ReplicationMetrics::touches_sent`].
    pub touches_sent: u64,
    /// See [`ReplicationMetrics::records_received`].
    pub records_received: u64,
    /// See [`ReplicationMetrics::touches_received`].
    pub touches_received: u64,
    /// See [`ReplicationMetrics::bytes_sent`].
    pub bytes_sent: u64,
    /// See [`ReplicationMetrics::bytes_received`].
    pub bytes_received: u64,
    /// See [`ReplicationMetrics::repairs_applied`].
    pub repairs_applied: u64,
    /// See [`ReplicationMetrics::repairs_sent`].
    pub repairs_sent: u64,
    /// See [`ReplicationMetrics::anti_entropy_rounds`].
    pub anti_entropy_rounds: u64,
    /// See [`ReplicationMetrics::snapshots_served`].
    pub snapshots_served: u64,
    /// See [`ReplicationMetrics::snapshot_records_received`].
    pub snapshot_records_received: u64,
    /// See [`ReplicationMetrics::tombstones_collected`].
    pub tombstones_collected: u64,
    /// See [`ReplicationMetrics::peers_up`].
    pub peers_up: u64,
    /// See [`ReplicationMetrics::records_too_large`].
    pub records_too_large: u64,
    /// See [`ReplicationMetrics::links_dropped`].
    pub links_dropped: u64,
    /// See [`ReplicationMetrics::records_refused_clock_skew`].
    pub records_refused_clock_skew: u64,
    /// See [`ReplicationMetrics::outbox_overflows`].
    pub outbox_overflows: u64,
    /// See [`ReplicationMetrics::requests_refused`].
    pub requests_refused: u64,
}

impl ReplicationMetrics {
    /// Adds to a counter.
    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            records_sent: read(&self.records_sent),
            touches_sent: read(&self.touches_sent),
            records_received: read(&self.records_received),
            touches_received: read(&self.touches_received),
            bytes_sent: read(&self.bytes_sent),
            bytes_received: read(&self.bytes_received),
            repairs_applied: read(&self.repairs_applied),
            repairs_sent: read(&self.repairs_sent),
            anti_entropy_rounds: read(&self.anti_entropy_rounds),
            snapshots_served: read(&self.snapshots_served),
            snapshot_records_received: read(&self.snapshot_records_received),
            tombstones_collected: read(&self.tombstones_collected),
            peers_up: read(&self.peers_up),
            records_too_large: read(&self.records_too_large),
            links_dropped: read(&self.links_dropped),
            records_refused_clock_skew: read(&self.records_refused_clock_skew),
            outbox_overflows: read(&self.outbox_overflows),
            requests_refused: read(&self.requests_refused),
        }
    }
}
