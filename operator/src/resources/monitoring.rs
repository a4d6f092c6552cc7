//! ServiceMonitor and PrometheusRule for the Prometheus Operator, built as dynamic objects
//! because their CRDs may not exist (the operator applies them only when they do).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use sessionstore_api::constants::HTTP_PORT_NAME;
use sessionstore_api::names;

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// Memory fraction of the limit above which the critical alert fires.
pub const CRITICAL_MEMORY_FRACTION: f64 = 0.95;

/// The ServiceMonitor API resource.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// The PrometheusRule API resource.
pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    )
}

fn meta_with_extra_labels(cluster: &ValidatedCluster) -> kube::api::ObjectMeta {
    let mut metadata = child_meta(cluster, names::monitoring(&cluster.name));
    let labels = super::meta::labels_with(cluster, cluster.spec.monitoring.labels.as_ref());
    metadata.labels = Some(labels);
    metadata
}

/// The ServiceMonitor `<name>` scraping `/metrics` on the client Service's http port.
pub fn build_service_monitor(cluster: &ValidatedCluster) -> DynamicObject {
    let mut selector = names::selector_labels(&cluster.name);
    selector.insert(names::LABEL_SERVICE_ROLE.to_owned(), "client".to_owned());
    let mut object = DynamicObject::new(
        &names::monitoring(&cluster.name),
        &service_monitor_resource(),
    )
    .data(serde_json::json!({
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [cluster.namespace]},
            "endpoints": [{
                "port": HTTP_PORT_NAME,
                "path": "/metrics",
                "interval": cluster.spec.monitoring.interval,
            }],
        }
    }));
    object.metadata = meta_with_extra_labels(cluster);
    object
}

/// The PrometheusRule `<name>`: a warning while a node's memory alarm is raised (above the high
/// watermark) and a critical alert above 95% of its limit.
pub fn build_prometheus_rule(cluster: &ValidatedCluster) -> DynamicObject {
    let scope = format!(
        "namespace=\"{}\",service=\"{}\"",
        cluster.namespace,
        names::client_service(&cluster.name)
    );
    let mut object = DynamicObject::new(&names::monitoring(&cluster.name), &prometheus_rule_resource())
        .data(serde_json::json!({
            "spec": {
                "groups": [{
                    "name": format!("sessionstore-{}", cluster.name),
                    "rules": [
                        {
                            "alert": "SessionStoreMemoryHigh",
                            "expr": format!("max by (pod) (store_node_memory_alarm{{{scope}}}) == 1"),
                            "for": "2m",
                            "labels": {"severity": "warning"},
                            "annotations": {
                                "summary": "Session store node above its memory high watermark",
                                "description": format!(
                                    "{{{{ $labels.pod }}}} of SessionCluster {}/{} is above {:.0}% of its memory limit and refuses writes that grow memory. Raise resources.limits.memory or lower session timeouts.",
                                    cluster.namespace, cluster.name, cluster.high_watermark * 100.0
                                ),
                            },
                        },
                        {
                            "alert": "SessionStoreMemoryCritical",
                            "expr": format!(
                                "max by (pod) (store_node_memory_used_bytes{{{scope}}} / (store_node_memory_limit_bytes{{{scope}}} > 0)) > {CRITICAL_MEMORY_FRACTION}"
                            ),
                            "for": "1m",
                            "labels": {"severity": "critical"},
                            "annotations": {
                                "summary": "Session store node close to its memory limit",
                                "description": format!(
                                    "{{{{ $labels.pod }}}} of SessionCluster {}/{} uses more than 95% of its memory limit.",
                                    cluster.namespace, cluster.name
                                ),
                            },
                        },
                    ],
                }],
            }
        }));
    object.metadata = meta_with_extra_labels(cluster);
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    #[test]
    fn service_monitor_scrapes_the_client_service_only() {
        let monitor = build_service_monitor(&validated(
            serde_json::json!({"monitoring": {"enabled": true, "labels": {"release": "prom"}}}),
        ));
        assert_eq!(
            monitor.types.as_ref().map(|t| t.kind.as_str()),
            Some("ServiceMonitor")
        );
        assert_eq!(
            monitor.data["spec"]["selector"]["matchLabels"]["sessionstore.dev/service"],
            "client"
        );
        assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "http");
        assert_eq!(monitor.data["spec"]["endpoints"][0]["interval"], "30s");
        assert_eq!(
            monitor
                .metadata
                .labels
                .and_then(|l| l.get("release").cloned()),
            Some("prom".to_owned())
        );
    }

    #[test]
    fn prometheus_rule_has_warning_and_critical() {
        let rule = build_prometheus_rule(&validated(serde_json::json!({})));
        let rules = &rule.data["spec"]["groups"][0]["rules"];
        assert_eq!(rules[0]["labels"]["severity"], "warning");
        assert_eq!(
            rules[0]["expr"],
            "max by (pod) (store_node_memory_alarm{namespace=\"apps\",service=\"demo\"}) == 1"
        );
        assert_eq!(rules[1]["labels"]["severity"], "critical");
    }
}
