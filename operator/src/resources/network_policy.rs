//! The NetworkPolicy (on by default): the peer port only from the cluster's own pods; the RESP
//! and HTTP ports from `allowedClients` (every source when it is empty); when it is set, the
//! HTTP port also from the operator's namespace (it polls `/v1/status` and calls leave) and
//! from `metricsFrom` (Prometheus scrapes `/metrics`; default the `monitoring` namespace).
//! Kubelet probes come from the node itself, which network plugins let through.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sessionstore_api::constants::{HTTP_PORT, RESP_PORT};
use sessionstore_api::names;

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// The namespace `metricsFrom` defaults to.
pub const MONITORING_NAMESPACE: &str = "monitoring";

/// The label every namespace carries with its own name (Kubernetes 1.22+).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

/// Every pod of the namespace `name`.
fn namespace_peer(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_owned(),
                name.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The NetworkPolicy `<name>`, or `None` when `networkPolicy.enabled` is false.
/// `operator_namespace` is where the operator runs.
pub fn build_network_policy(
    cluster: &ValidatedCluster,
    operator_namespace: &str,
) -> Option<NetworkPolicy> {
    let spec = &cluster.spec.network_policy;
    if !spec.enabled {
        return None;
    }
    let own_pods = LabelSelector {
        match_labels: Some(names::selector_labels(&cluster.name)),
        ..LabelSelector::default()
    };
    let clients = spec.allowed_clients.clone().filter(|c| !c.is_empty());
    // `from: None` admits every source; with clients named, HTTP also admits the operator and
    // the scrapers, which the clients list would otherwise shut out.
    let http_from = clients.clone().map(|mut from| {
        from.push(namespace_peer(operator_namespace));
        from.extend(
            spec.metrics_from
                .clone()
                .unwrap_or_else(|| vec![namespace_peer(MONITORING_NAMESPACE)]),
        );
        from
    });
    Some(NetworkPolicy {
        metadata: child_meta(cluster, names::network_policy(&cluster.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(own_pods.clone()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(own_pods),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![tcp(names::peer_port())]),
                },
                NetworkPolicyIngressRule {
                    from: clients,
                    ports: Some(vec![tcp(RESP_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: http_from,
                    ports: Some(vec![tcp(HTTP_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    fn rules(spec: serde_json::Value) -> Vec<NetworkPolicyIngressRule> {
        build_network_policy(&validated(spec), "sessionstore-system")
            .and_then(|p| p.spec)
            .and_then(|s| s.ingress)
            .unwrap_or_default()
    }

    #[test]
    fn on_by_default_and_absent_when_disabled() {
        assert!(build_network_policy(
            &validated(serde_json::json!({"networkPolicy": {"enabled": false}})),
            "ops"
        )
        .is_none());
        let rules = rules(serde_json::json!({}));
        assert_eq!(rules.len(), 3);
        // Without allowedClients: peers from the cluster's pods only, RESP and HTTP from any.
        assert_eq!(rules[0].ports, Some(vec![tcp(7379)]));
        assert_eq!(
            rules[0].from.clone().unwrap_or_default()[0]
                .pod_selector
                .clone()
                .and_then(|s| s.match_labels),
            Some(names::selector_labels("demo"))
        );
        assert_eq!(
            (rules[1].ports.clone(), rules[1].from.clone()),
            (Some(vec![tcp(6379)]), None)
        );
        assert_eq!(
            (rules[2].ports.clone(), rules[2].from.clone()),
            (Some(vec![tcp(8080)]), None)
        );
    }

    #[test]
    fn allowed_clients_limit_resp_and_http_which_also_admits_the_operator_and_monitoring() {
        let web = serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}});
        let rules = rules(serde_json::json!({"networkPolicy": {"allowedClients": [web.clone()]}}));
        let web: NetworkPolicyPeer = serde_json::from_value(web).unwrap_or_default();
        assert_eq!(rules[1].from, Some(vec![web.clone()]));
        assert_eq!(
            rules[2].from,
            Some(vec![
                web.clone(),
                namespace_peer("sessionstore-system"),
                namespace_peer("monitoring")
            ])
        );
        let scrapers = serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "obs"}}});
        let rules = rules_with_metrics(&web, scrapers.clone());
        let scrapers: NetworkPolicyPeer = serde_json::from_value(scrapers).unwrap_or_default();
        assert_eq!(
            rules[2].from,
            Some(vec![web, namespace_peer("sessionstore-system"), scrapers])
        );
    }

    fn rules_with_metrics(
        web: &NetworkPolicyPeer,
        scrapers: serde_json::Value,
    ) -> Vec<NetworkPolicyIngressRule> {
        rules(serde_json::json!({"networkPolicy": {
            "allowedClients": [web], "metricsFrom": [scrapers]}}))
    }
}
