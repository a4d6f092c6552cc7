//! The operator's Prometheus metrics: reconciles, failures by category, reconcile duration, and
//! the memory of every node it polled (per cluster and node), served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-failure metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `invalid_spec`, `api`, `node`.
    pub category: String,
}

/// Labels of per-node gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// Namespace of the SessionCluster.
    pub namespace: String,
    /// SessionCluster name.
    pub cluster: String,
    /// Pod name.
    pub node: String,
}

/// All metrics of the operator.
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Failed reconciles by category.
    pub failures: Family<FailureLabels, Counter>,
    /// Reconcile duration in seconds.
    pub duration: Histogram,
    /// Bytes used per node.
    pub node_memory_used: Family<NodeLabels, Gauge>,
    /// Memory limit per node.
    pub node_memory_limit: Family<NodeLabels, Gauge>,
    /// 1 while a node's memory alarm is raised.
    pub node_memory_alarm: Family<NodeLabels, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            node_memory_used: Family::default(),
            node_memory_limit: Family::default(),
            node_memory_alarm: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("sessionstore_operator");
        sub.register("reconciles", "Reconciles run", metrics.reconciles.clone());
        sub.register(
            "reconcile_failures",
            "Failed reconciles by category",
            metrics.failures.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            metrics.duration.clone(),
        );
        sub.register(
            "node_memory_used_bytes",
            "Memory a node reports as used",
            metrics.node_memory_used.clone(),
        );
        sub.register(
            "node_memory_limit_bytes",
            "Memory limit a node reports",
            metrics.node_memory_limit.clone(),
        );
        sub.register(
            "node_memory_alarm",
            "1 while a node is above its high watermark",
            metrics.node_memory_alarm.clone(),
        );
        metrics
    }

    /// Records one finished reconcile.
    pub fn observe(&self, duration: Duration, failure: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(duration.as_secs_f64());
        if let Some(category) = failure {
            self.failures
                .get_or_create(&FailureLabels {
                    category: category.to_owned(),
                })
                .inc();
        }
    }
}
