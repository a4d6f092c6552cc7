//! Persistence counters and the fsync latency histogram as plain atomics, for `/metrics`,
//! `INFO persistence` and `/v1/status`. The writer thread and snapshots update them; readers
//! take a [`PersistenceMetricsSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (microseconds) of the fsync latency buckets; a last, unbounded bucket follows.
/// Dense around 0.1–50 ms, where SSD and network-volume fsyncs live, so p50 and p99 are useful.
pub const FSYNC_BUCKETS_MICROS: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Counters and gauges of the persistence layer.
#[derive(Debug, Default)]
pub struct PersistenceMetrics {
    /// Bytes of log segments and snapshots in the data directory (gauge).
    pub disc_bytes: AtomicU64,
    /// Log bytes written since the last snapshot began (gauge; drives compaction).
    pub log_bytes_since_snapshot: AtomicU64,
    /// Size of the last snapshot file, i.e. the live bytes when it was taken (gauge).
    pub snapshot_bytes: AtomicU64,
    /// Records appended to the log.
    pub records_written: AtomicU64,
    /// Frame bytes appended to the log.
    pub bytes_written: AtomicU64,
    /// `write` calls that appended to the log (records per write shows the group commit).
    pub log_writes: AtomicU64,
    /// Completed fdatasync calls on log segments.
    pub fsyncs: AtomicU64,
    /// Sum of fsync latencies (microseconds).
    pub fsync_micros_total: AtomicU64,
    /// fsync latency histogram: counts per bucket of [`FSYNC_BUCKETS_MICROS`], plus overflow.
    pub fsync_buckets: [AtomicU64; FSYNC_BUCKETS_MICROS.len() + 1],
    /// Write or fsync failures of the log (disc full, I/O error).
    pub io_errors: AtomicU64,
    /// 1 while the log is failing and writes are refused (gauge).
    pub failing: AtomicU64,
    /// Snapshots completed.
    pub snapshots: AtomicU64,
    /// Unix milliseconds when the last snapshot completed (0 = none since start).
    pub last_snapshot_unix_ms: AtomicU64,
    /// Duration of the last snapshot (milliseconds).
    pub last_snapshot_duration_ms: AtomicU64,
    /// Torn or corrupt log tails truncated at recovery.
    pub truncations: AtomicU64,
    /// Encoded bytes waiting in the writer queue (gauge).
    pub queued_bytes: AtomicU64,
}

impl PersistenceMetrics {
    /// Accounts one fsync that took `elapsed`.
    pub fn observe_fsync(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = FSYNC_BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(FSYNC_BUCKETS_MICROS.len());
        self.fsync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_micros_total.fetch_add(micros, Ordering::Relaxed);
    }

    /// A plain copy of every value.
    pub fn snapshot(&self) -> PersistenceMetricsSnapshot {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        let mut fsync_buckets = [0u64; FSYNC_BUCKETS_MICROS.len() + 1];
        for (out, bucket) in fsync_buckets.iter_mut().zip(self.fsync_buckets.iter()) {
            *out = load(bucket);
        }
        PersistenceMetricsSnapshot {
            disc_bytes: load(&self.disc_bytes),
            log_bytes_since_snapshot: load(&self.log_bytes_since_snapshot),
            snapshot_bytes: load(&self.snapshot_bytes),
            records_written: load(&self.records_written),
            bytes_written: load(&self.bytes_written),
            log_writes: load(&self.log_writes),
            fsyncs: load(&self.fsyncs),
            fsync_micros_total: load(&self.fsync_micros_total),
            fsync_buckets,
            io_errors: load(&self.io_errors),
            failing: load(&self.failing) != 0,
            snapshots: load(&self.snapshots),
            last_snapshot_unix_ms: load(&self.last_snapshot_unix_ms),
            last_snapshot_duration_ms: load(&self.last_snapshot_duration_ms),
            truncations: load(&self.truncations),
            queued_bytes: load(&self.queued_bytes),
        }
    }
}

/// A plain copy of [`PersistenceMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersistenceMetricsSnapshot {
    /// See [`PersistenceMetrics::disc_bytes`].
    pub disc_bytes: u64,
    /// See [`PersistenceMetrics::log_bytes_since_snapshot`].
    pub log_bytes_since_snapshot: u64,
    /// See [`PersistenceMetrics::snapshot_bytes`].
    pub snapshot_bytes: u64,
    /// See [`PersistenceMetrics::records_written`].
    pub records_written: u64,
    /// See [`PersistenceMetrics::bytes_written`].
    pub bytes_written: u64,
    /// See [`PersistenceMetrics::log_writes`].
    pub log_writes: u64,
    /// See [`PersistenceMetrics::fsyncs`].
    pub fsyncs: u64,
    /// See [`PersistenceMetrics::fsync_micros_total`].
    pub fsync_micros_total: u64,
    /// See [`PersistenceMetrics::fsync_buckets`].
    pub fsync_buckets: [u64; FSYNC_BUCKETS_MICROS.len() + 1],
    /// See [`PersistenceMetrics::io_errors`].
    pub io_errors: u64,
    /// See [`PersistenceMetrics::failing`].
    pub failing: bool,
    /// See [`PersistenceMetrics::snapshots`].
    pub snapshots: u64,
    /// See [`PersistenceMetrics::last_snapshot_unix_ms`].
    pub last_snapshot_unix_ms: u64,
    /// See [`PersistenceMetrics::last_snapshot_duration_ms`].
    pub last_snapshot_duration_ms: u64,
    /// See [`PersistenceMetrics::truncations`].
    pub truncations: u64,
    /// See [`PersistenceMetrics::queued_bytes`].
    pub queued_bytes: u64,
}

impl PersistenceMetricsSnapshot {
    /// The upper bound (microseconds) of the bucket holding the `quantile` (0..=1) of fsync
    /// latencies; `None` without fsyncs, `u64::MAX` when it falls in the overflow bucket.
    pub fn fsync_quantile_micros(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.fsync_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * quantile.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.fsync_buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(FSYNC_BUCKETS_MICROS.get(index).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_histogram_gives_bucket_quantiles() {
        let metrics = PersistenceMetrics::default();
        for _ in 0..98 {
            metrics.observe_fsync(Duration::from_micros(80));
        }
        metrics.observe_fsync(Duration::from_millis(20));
        metrics.observe_fsync(Duration::from_secs(3));
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.fsyncs, 100);
        assert_eq!(snapshot.fsync_buckets[1], 98);
        assert_eq!(snapshot.fsync_quantile_micros(0.5), Some(100));
        assert_eq!(snapshot.fsync_quantile_micros(0.99), Some(25_000));
        assert_eq!(snapshot.fsync_quantile_micros(1.0), Some(u64::MAX));
        assert_eq!(
            PersistenceMetrics::default()
                .snapshot()
                .fsync_quantile_micros(0.5),
            None
        );
    }
}
