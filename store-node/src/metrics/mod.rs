//! The node's counters, a leaf every part may count into. Hot-path counters are plain atomics
//! indexed by command; `/metrics` (`crate::net::http::prometheus`) renders them per scrape, so
//! commands never take a lock or allocate to be counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency bucket upper bounds in microseconds.
pub const LATENCY_BUCKETS_MICROS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 100_000,
];

/// Most commands a node counts (indexes into the command table; a test of the table keeps it
/// within).
pub const COMMAND_SLOTS: usize = 512;

/// Node counters.
#[derive(Debug)]
pub struct Metrics {
    commands: Vec<AtomicU64>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    latency_sum_nanos: AtomicU64,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Connections refused because of `--max-clients`.
    pub rejected_connections: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Commands refused with OOM.
    pub oom_rejections: AtomicU64,
    /// TLS handshakes of clients (RESP and HTTP) that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// HTTP connections closed at once at `--http-max-connections`.
    pub http_rejected_connections: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            commands: (0..COMMAND_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            latency_buckets: Default::default(),
            latency_sum_nanos: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            oom_rejections: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            http_rejected_connections: AtomicU64::new(0),
        }
    }
}

/// Per-connection counters, added to the shared [`Metrics`] once per batch of pipelined
/// commands: shared atomics touched per command bounce cache lines between cores.
#[derive(Debug, Default)]
pub struct LocalMetrics {
    counts: Vec<(usize, u64)>,
    buckets: [u64; LATENCY_BUCKETS_MICROS.len() + 1],
    sum_nanos: u64,
    observed: u64,
    /// When the previous command of the current batch ended ([`monotonic_nanos`]): the next
    /// one is timed from there, so a pipelined command costs one clock read instead of two.
    previous_end: Option<u64>,
}

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC`, the clock `Instant` reads), from an
/// arbitrary start; 0 should the clock be unreadable. Read directly because every command is
/// timed: `Instant`'s checked subtraction costs about 40 instructions more per command than
/// subtracting two counts of nanoseconds.
pub fn monotonic_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and the clock
    // id is a constant every supported kernel knows.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if result != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64)
}

impl LocalMetrics {
    /// Starts a batch of commands read together; the first is timed from its own start.
    pub fn begin_batch(&mut self) {
        self.previous_end = None;
    }

    /// When the command about to run started ([`monotonic_nanos`]): the end of the previous
    /// one in this batch.
    pub fn command_start(&self) -> u64 {
        self.previous_end.unwrap_or_else(monotonic_nanos)
    }

    /// Records one call of the command at `index` in the command table that started at `started`
    /// ([`LocalMetrics::command_start`]) and ends now.
    pub fn observe_since(&mut self, index: usize, started: u64) {
        let now = monotonic_nanos();
        self.observe_nanos(index, now.saturating_sub(started));
        self.previous_end = Some(now);
    }

    /// Records one call of the command at `index` in the command table and its latency.
    pub fn observe(&mut self, index: usize, elapsed: Duration) {
        self.observe_nanos(index, u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// [`LocalMetrics::observe`] of a latency in nanoseconds.
    fn observe_nanos(&mut self, index: usize, nanos: u64) {
        match self.counts.iter_mut().find(|(known, _)| *known == index) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((index, 1)),
        }
        let micros = nanos / 1_000;
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[bucket] += 1;
        self.sum_nanos += nanos;
        self.observed += 1;
    }
}

impl Metrics {
    /// Adds a connection's local counters and resets them.
    pub fn flush(&self, local: &mut LocalMetrics) {
        if local.observed == 0 {
            return;
        }
        for (index, count) in local.counts.drain(..) {
            if let Some(counter) = self.commands.get(index) {
                counter.fetch_add(count, Ordering::Relaxed);
            }
        }
        for (shared, count) in self.latency_buckets.iter().zip(local.buckets.iter_mut()) {
            if *count > 0 {
                shared.fetch_add(*count, Ordering::Relaxed);
                *count = 0;
            }
        }
        self.latency_sum_nanos
            .fetch_add(local.sum_nanos, Ordering::Relaxed);
        local.sum_nanos = 0;
        local.observed = 0;
    }

    /// Calls of the command at `index`.
    pub fn command_calls(&self, index: usize) -> u64 {
        self.commands
            .get(index)
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Command latencies: the count per bucket of [`LATENCY_BUCKETS_MICROS`] (the last one
    /// unbounded) and the sum in nanoseconds.
    pub fn latency(&self) -> ([u64; LATENCY_BUCKETS_MICROS.len() + 1], u64) {
        let mut buckets = [0; LATENCY_BUCKETS_MICROS.len() + 1];
        for (bucket, counter) in buckets.iter_mut().zip(self.latency_buckets.iter()) {
            *bucket = counter.load(Ordering::Relaxed);
        }
        (buckets, self.latency_sum_nanos.load(Ordering::Relaxed))
    }

    /// Total commands processed.
    pub fn total_commands(&self) -> u64 {
        self.commands
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .sum()
    }
}
