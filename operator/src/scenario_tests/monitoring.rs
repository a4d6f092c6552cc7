//! The Prometheus Operator's objects follow its CRDs and `monitoring.enabled`.

use serde_json::json;

use super::harness::Harness;

#[tokio::test]
async fn monitoring_objects_follow_the_crds_and_the_spec() {
    let h = Harness::new();
    let on = json!({"monitoring": {"enabled": true, "interval": "15s"}});
    let monitoring_writes = |writes: Vec<String>| -> Vec<String> {
        writes
            .into_iter()
            .filter(|w| w.contains("monitoring.coreos.com"))
            .collect()
    };
    let unavailable = |h: &Harness| {
        h.events()
            .iter()
            .filter(|(t, r)| t == "Warning" && r == "MonitoringUnavailable")
            .count()
    };

    // Without the Prometheus Operator's CRDs: one Warning naming both, once.
    assert_eq!(
        monitoring_writes(h.reconcile(on.clone()).await),
        Vec::<String>::new()
    );
    h.reconcile(on.clone()).await;
    assert_eq!(unavailable(&h), 1);
    assert_eq!(h.condition("ReconcileSuccess").0, "True");

    for crd in ["servicemonitors", "prometheusrules"] {
        h.api.put(
            &format!(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.monitoring.coreos.com"
            ),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{crd}.monitoring.coreos.com")}}),
        );
    }
    let service_monitor = "/apis/monitoring.coreos.com/v1/namespaces/apps/servicemonitors/demo";
    let prometheus_rule = "/apis/monitoring.coreos.com/v1/namespaces/apps/prometheusrules/demo";
    assert_eq!(
        monitoring_writes(h.reconcile(on.clone()).await),
        [
            format!("PATCH {service_monitor}"),
            format!("PATCH {prometheus_rule}")
        ]
    );
    assert_eq!(
        h.api.get(service_monitor).unwrap_or_default()["spec"]["endpoints"][0]["interval"],
        "15s"
    );
    assert_eq!(
        monitoring_writes(h.reconcile(on).await),
        Vec::<String>::new()
    );

    // Disabled: what it made is deleted, once.
    let off = json!({"monitoring": {"enabled": false}});
    assert_eq!(
        monitoring_writes(h.reconcile(off.clone()).await),
        [
            format!("DELETE {service_monitor}"),
            format!("DELETE {prometheus_rule}")
        ]
    );
    assert_eq!(h.api.get(service_monitor), None);
    assert_eq!(
        monitoring_writes(h.reconcile(off).await),
        Vec::<String>::new()
    );
    assert_eq!(unavailable(&h), 1);
}
