//! The operator's Prometheus metrics: reconciles, failures by category, reconcile duration, and
//! the memory of every node it polled (per cluster and node), served on `/metrics`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
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
    /// Nodes with gauges, per (namespace, cluster): a Family cannot list its label sets, and the
    /// gauges of a removed node or cluster must go rather than report its last value forever.
    nodes: Mutex<HashMap<(String, String), BTreeSet<String>>>,
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
            nodes: Mutex::default(),
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

    /// Sets the memory gauges of one node.
    pub fn set_node_memory(
        &self,
        namespace: &str,
        cluster: &str,
        node: &str,
        used_bytes: u64,
        limit_bytes: u64,
        alarm: bool,
    ) {
        let labels = NodeLabels {
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
            node: node.to_owned(),
        };
        let to_gauge = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.node_memory_used
            .get_or_create(&labels)
            .set(to_gauge(used_bytes));
        self.node_memory_limit
            .get_or_create(&labels)
            .set(to_gauge(limit_bytes));
        self.node_memory_alarm
            .get_or_create(&labels)
            .set(i64::from(alarm));
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes
                .entry((namespace.to_owned(), cluster.to_owned()))
                .or_default()
                .insert(node.to_owned());
        }
    }

    /// Removes the gauges of every node of a cluster for which `keep` is false (nodes removed by
    /// a scale-down).
    pub fn retain_nodes(&self, namespace: &str, cluster: &str, keep: impl Fn(&str) -> bool) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        let key = (namespace.to_owned(), cluster.to_owned());
        let Some(known) = nodes.get_mut(&key) else {
            return;
        };
        let (kept, removed): (BTreeSet<String>, BTreeSet<String>) = std::mem::take(known)
            .into_iter()
            .partition(|node| keep(node));
        for node in removed {
            let labels = NodeLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
                node,
            };
            self.node_memory_used.remove(&labels);
            self.node_memory_limit.remove(&labels);
            self.node_memory_alarm.remove(&labels);
        }
        if kept.is_empty() {
            nodes.remove(&key);
        } else {
            *known = kept;
        }
    }

    /// Removes the gauges of every node of a deleted cluster.
    pub fn forget_cluster(&self, namespace: &str, cluster: &str) {
        self.retain_nodes(namespace, cluster, |_| false);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
            panic!("encoding failed: {error}");
        }
        text
    }

    /// The used-bytes samples, sorted (a Family does not keep an order).
    fn used_lines(text: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sessionstore_operator_node_memory_used_bytes{"))
            .collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn gauges_of_removed_nodes_and_clusters_disappear_from_metrics() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        for node in ["web-0", "web-1", "web-2"] {
            metrics.set_node_memory("apps", "web", node, 10, 100, false);
        }
        metrics.set_node_memory("apps", "api", "api-0", 20, 100, true);
        assert_eq!(used_lines(&scrape(&registry)).len(), 4);

        metrics.retain_nodes("apps", "web", |node| node != "web-2");
        let text = scrape(&registry);
        assert_eq!(
            used_lines(&text),
            [
                r#"sessionstore_operator_node_memory_used_bytes{namespace="apps",cluster="api",node="api-0"} 20"#,
                r#"sessionstore_operator_node_memory_used_bytes{namespace="apps",cluster="web",node="web-0"} 10"#,
                r#"sessionstore_operator_node_memory_used_bytes{namespace="apps",cluster="web",node="web-1"} 10"#,
            ]
        );
        assert!(!text.contains("web-2"), "{text}");

        metrics.forget_cluster("apps", "web");
        let text = scrape(&registry);
        assert!(!text.contains(r#"cluster="web""#), "{text}");
        assert!(text.contains(
            r#"sessionstore_operator_node_memory_alarm{namespace="apps",cluster="api",node="api-0"} 1"#
        ));
    }
}
