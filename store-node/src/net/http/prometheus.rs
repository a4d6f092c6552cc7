//! `/metrics`: the Prometheus text exposition of a node, built per scrape by a collector that
//! reads the node's counters, its keyspace and its write-ahead log.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::commands::commands;
use crate::metrics::LATENCY_BUCKETS_MICROS;
use crate::node::NodeState;

/// `GET /metrics`: the node's metrics, then replication's.
pub(super) async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    match render(&state) {
        Ok(mut text) => {
            if let Some(replication) = state.replication() {
                // Before the OpenMetrics terminator, which must stay last.
                let terminated = text.ends_with("# EOF\n");
                if terminated {
                    text.truncate(text.len() - "# EOF\n".len());
                }
                text.push_str(&crate::replication::prometheus::render(replication));
                if terminated {
                    text.push_str("# EOF\n");
                }
            }
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Debug)]
struct NodeCollector {
    state: Arc<NodeState>,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = &self.state;
        let metrics = &state.metrics;
        {
            let mut family = encoder.encode_descriptor(
                "store_node_commands",
                "Commands processed, by command",
                None,
                MetricType::Counter,
            )?;
            for (index, spec) in commands().iter().enumerate() {
                let calls = metrics.command_calls(index);
                if calls == 0 {
                    continue;
                }
                let labels = [("command", spec.name)];
                let metric = family.encode_family(&labels)?;
                ConstCounter::new(calls).encode(metric)?;
            }
        }
        {
            // Per-bucket counts: the text encoder makes them cumulative.
            let mut count = 0;
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_MICROS.len() + 1);
            let bounds = LATENCY_BUCKETS_MICROS
                .iter()
                .map(|&bound| bound as f64 / 1e6)
                .chain([f64::INFINITY]);
            let (counts, sum_nanos) = metrics.latency();
            for (bound, in_bucket) in bounds.zip(counts) {
                count += in_bucket;
                buckets.push((bound, in_bucket));
            }
            let sum = sum_nanos as f64 / 1e9;
            let mut histogram = encoder.encode_descriptor(
                "store_node_command_duration_seconds",
                "Command execution latency",
                None,
                MetricType::Histogram,
            )?;
            histogram.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        let stats = state.engine.stats();
        let memory = state.engine.memory();
        gauge(
            &mut encoder,
            "store_node_keys",
            "Keys in the keyspace",
            stats.keys as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_keys_with_ttl",
            "Keys with an expiry",
            stats.volatile_keys as i64,
        )?;
        counter(
            &mut encoder,
            "store_node_expired_keys",
            "Keys removed by expiry",
            stats.expired,
        )?;
        counter(
            &mut encoder,
            "store_node_evicted_keys",
            "Keys removed by eviction",
            stats.evicted,
        )?;
        counter(
            &mut encoder,
            "store_node_keyspace_hits",
            "Reads that found their key",
            stats.hits,
        )?;
        counter(
            &mut encoder,
            "store_node_keyspace_misses",
            "Reads that did not find their key",
            stats.misses,
        )?;
        let readings = state.memory.last();
        gauge(
            &mut encoder,
            "store_node_memory_used_bytes",
            "Used memory: the sampled footprint plus the growth accounted since (the watermarks compare it)",
            memory.used_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_data_bytes",
            "Estimated memory used by data",
            memory.data_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_client_buffer_bytes",
            "Memory held by RESP connection buffers",
            memory.buffer_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_rss_bytes",
            "Resident memory of the process, file pages included",
            readings.process_rss_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_reserve_bytes",
            "Part of the limit kept for transient peaks",
            memory.reserve_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_limit_bytes",
            "Memory limit (0 = unlimited)",
            memory.limit_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_high_watermark_bytes",
            "Alarm threshold",
            memory.high_watermark_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_low_watermark_bytes",
            "Alarm clear threshold",
            memory.low_watermark_bytes as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_alarm",
            "1 while the memory alarm is raised",
            i64::from(memory.alarm),
        )?;
        let pubsub = &state.pubsub;
        let (channels, patterns, shard_channels) = pubsub.counts();
        gauge(
            &mut encoder,
            "store_node_pubsub_subscribers",
            "Connections subscribed to a channel, pattern or shard channel",
            pubsub.subscribers() as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_pubsub_channels",
            "Channels and shard channels with a subscriber on this node",
            (channels + shard_channels) as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_pubsub_patterns",
            "Patterns with a subscriber on this node",
            patterns as i64,
        )?;
        counter(
            &mut encoder,
            "store_node_pubsub_messages_published",
            "Messages published on this node, by its clients or its peers",
            pubsub.metrics.published.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_pubsub_messages_delivered",
            "Messages queued for a subscriber of this node",
            pubsub.metrics.delivered.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_pubsub_messages_dropped",
            "Messages not delivered: their subscriber was over its output buffer limit",
            pubsub.metrics.dropped.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_pubsub_slow_subscribers_disconnected",
            "Subscribers disconnected for passing client-output-buffer-limit pubsub",
            pubsub.metrics.disconnected.load(Ordering::Relaxed),
        )?;
        let scripts = &state.scripts.metrics;
        counter(
            &mut encoder,
            "store_node_scripts_run",
            "Lua scripts run (EVAL, EVALSHA and their read-only forms)",
            scripts.runs.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_scripts_failed",
            "Lua scripts that ended in an error reply",
            scripts.errors.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_scripts_killed",
            "Lua scripts stopped by SCRIPT KILL",
            scripts.killed.load(Ordering::Relaxed),
        )?;
        {
            let seconds = scripts.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let metric = prometheus_client::metrics::counter::ConstCounter::new(seconds);
            metric.encode(encoder.encode_descriptor(
                "store_node_scripts_duration_seconds",
                "Time spent running Lua scripts",
                None,
                metric.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "store_node_scripts_cached",
            "Scripts in this node's script cache",
            state.scripts.cached() as i64,
        )?;
        gauge(
            &mut encoder,
            "store_node_memory_peer_alarm",
            "1 while a peer announces its memory alarm",
            i64::from(memory.peer_alarm),
        )?;
        gauge(
            &mut encoder,
            "store_node_connected_clients",
            "Connected RESP clients",
            state.clients.load(Ordering::Relaxed) as i64,
        )?;
        counter(
            &mut encoder,
            "store_node_connections",
            "RESP connections accepted",
            metrics.connections_total.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_rejected_connections",
            "RESP connections refused at the client limit",
            metrics.rejected_connections.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_protocol_errors",
            "Connections closed for a protocol error",
            metrics.protocol_errors.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "store_node_oom_rejections",
            "Commands refused with OOM",
            metrics.oom_rejections.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "store_node_uptime_seconds",
            "Seconds since start",
            state.uptime_seconds() as i64,
        )?;
        if let Some(persistence) = state.persistence() {
            encode_persistence(&mut encoder, &persistence.metrics().snapshot())?;
        }
        super::security_metrics::encode(&mut encoder, state)?;
        Ok(())
    }
}

/// The write-ahead log's metrics (disc mode).
fn encode_persistence(
    encoder: &mut DescriptorEncoder,
    metrics: &crate::persistence::PersistenceMetricsSnapshot,
) -> Result<(), std::fmt::Error> {
    let gauges = [
        (
            "store_node_disc_bytes",
            "Bytes of snapshots and log segments in the data directory",
            metrics.disc_bytes,
        ),
        (
            "store_node_wal_bytes_since_snapshot",
            "Log bytes written since the last snapshot",
            metrics.log_bytes_since_snapshot,
        ),
        (
            "store_node_snapshot_bytes",
            "Size of the last snapshot",
            metrics.snapshot_bytes,
        ),
        (
            "store_node_wal_queued_bytes",
            "Records queued for the write-ahead log's writer; writers wait while it holds --log-queue-limit-bytes",
            metrics.queued_bytes,
        ),
        (
            "store_node_wal_failing",
            "1 while the write-ahead log cannot be written (writes answer MISCONF)",
            u64::from(metrics.failing),
        ),
        (
            "store_node_last_snapshot_timestamp_ms",
            "When the last snapshot was written (Unix ms), 0 = none since start",
            metrics.last_snapshot_unix_ms,
        ),
    ];
    for (name, help, value) in gauges {
        gauge(encoder, name, help, value as i64)?;
    }
    let counters = [
        (
            "store_node_wal_records",
            "Records appended to the write-ahead log",
            metrics.records_written,
        ),
        (
            "store_node_wal_written_bytes",
            "Bytes appended to the write-ahead log",
            metrics.bytes_written,
        ),
        (
            "store_node_wal_writes",
            "write calls appending to the write-ahead log (group commit: records per write)",
            metrics.log_writes,
        ),
        (
            "store_node_wal_io_errors",
            "Write-ahead log write or fdatasync errors",
            metrics.io_errors,
        ),
        (
            "store_node_snapshots",
            "Snapshots written",
            metrics.snapshots,
        ),
        (
            "store_node_wal_truncations",
            "Torn log tails cut at recovery",
            metrics.truncations,
        ),
    ];
    for (name, help, value) in counters {
        counter(encoder, name, help, value)?;
    }
    // Per-bucket counts: the encoder accumulates them.
    let mut buckets = Vec::with_capacity(metrics.fsync_buckets.len());
    for (index, bound) in crate::persistence::metrics::FSYNC_BUCKETS_MICROS
        .iter()
        .enumerate()
    {
        buckets.push((*bound as f64 / 1e6, metrics.fsync_buckets[index]));
    }
    buckets.push((
        f64::INFINITY,
        metrics.fsync_buckets[crate::persistence::metrics::FSYNC_BUCKETS_MICROS.len()],
    ));
    let count = metrics.fsync_buckets.iter().sum();
    let mut histogram = encoder.encode_descriptor(
        "store_node_wal_fsync_duration_seconds",
        "Write-ahead log fdatasync latency",
        None,
        MetricType::Histogram,
    )?;
    histogram.encode_histogram::<NoLabelSet>(
        metrics.fsync_micros_total as f64 / 1e6,
        count,
        &buckets,
        None,
    )
}

/// Renders the Prometheus text exposition for a node.
pub fn render(state: &Arc<NodeState>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector {
        state: state.clone(),
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::metrics::LocalMetrics;
    use crate::store::{EngineConfig, MemoryEngine};

    /// The counts of the `le` series of a histogram in the text exposition, in order.
    fn bucket_counts(text: &str, name: &str) -> Vec<u64> {
        let prefix = format!("{name}_bucket{{");
        text.lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn command_latency_histogram_buckets_are_cumulative_once() {
        let engine = Arc::new(MemoryEngine::new(EngineConfig::default()));
        let state = Arc::new(NodeState::new(Config::for_tests(), engine, None));
        let mut local = LocalMetrics::default();
        for micros in [3, 7, 7, 2_000, 1_000_000] {
            local.observe(0, Duration::from_micros(micros));
        }
        state.metrics.flush(&mut local);
        let text = render(&state).expect("the exposition renders");
        // Bounds 5 µs, 10, 25, 50, 100, 250, 500 µs, 1, 2.5, 5, 10, 100 ms, +Inf.
        assert_eq!(
            bucket_counts(&text, "store_node_command_duration_seconds"),
            [1, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5],
            "{text}"
        );
        assert!(
            text.contains("store_node_command_duration_seconds_count 5\n"),
            "{text}"
        );
        assert!(
            text.contains("store_node_command_duration_seconds_sum 1.002017\n"),
            "{text}"
        );
    }
}
