//! The optional NetworkPolicy: the peer port only from the cluster's own pods, RESP only from
//! the allowed clients, HTTP from anywhere (the operator polls `/v1/status` and calls leave,
//! Prometheus scrapes `/metrics`; the session API on it still requires the password).

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

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

/// The NetworkPolicy `<name>`, or `None` when `networkPolicy.enabled` is false.
pub fn build_network_policy(cluster: &ValidatedCluster) -> Option<NetworkPolicy> {
    let spec = &cluster.spec.network_policy;
    if !spec.enabled {
        return None;
    }
    let own_pods = LabelSelector {
        match_labels: Some(names::selector_labels(&cluster.name)),
        ..LabelSelector::default()
    };
    let clients = spec.allowed_clients.clone().filter(|c| !c.is_empty());
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
                    from: None,
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

    #[test]
    fn absent_unless_enabled() {
        assert!(build_network_policy(&validated(serde_json::json!({}))).is_none());
    }

    #[test]
    fn peers_only_from_own_pods() {
        let policy = build_network_policy(&validated(serde_json::json!({
            "networkPolicy": {"enabled": true, "allowedClients": [{"podSelector": {"matchLabels": {"app": "web"}}}]}
        })));
        let rules = policy
            .and_then(|p| p.spec)
            .and_then(|s| s.ingress)
            .unwrap_or_default();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].ports, Some(vec![tcp(7379)]));
        let peer_from = rules[0].from.clone().unwrap_or_default();
        assert_eq!(
            peer_from[0]
                .pod_selector
                .clone()
                .and_then(|s| s.match_labels),
            Some(names::selector_labels("demo"))
        );
        assert_eq!(rules[1].ports, Some(vec![tcp(6379)]));
        assert_eq!(rules[1].from.as_ref().map(Vec::len), Some(1));
        assert_eq!(rules[2].from, None);
    }
}
