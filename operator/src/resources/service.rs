//! The two Services: the headless one the nodes resolve to find their peers (not-ready
//! addresses included, so a starting node is found before it is synced), and the client one
//! (ready pods only).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sessionstore_api::constants::{HTTP_PORT_NAME, PEER_PORT_NAME, RESP_PORT_NAME};
use sessionstore_api::names;

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

fn port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(target.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless Service `<name>-headless` exposing the peer port.
pub fn build_headless_service(cluster: &ValidatedCluster) -> Service {
    let mut metadata = child_meta(cluster, names::headless_service(&cluster.name));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(names::LABEL_SERVICE_ROLE.to_owned(), "headless".to_owned());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::selector_labels(&cluster.name)),
            ports: Some(vec![port(
                PEER_PORT_NAME,
                names::peer_port(),
                PEER_PORT_NAME,
            )]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client Service `<name>` exposing RESP and HTTP.
pub fn build_client_service(cluster: &ValidatedCluster) -> Service {
    let service = &cluster.spec.service;
    let mut metadata = child_meta(cluster, names::client_service(&cluster.name));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(names::LABEL_SERVICE_ROLE.to_owned(), "client".to_owned());
    }
    metadata.annotations = service.annotations.clone();
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(service.type_.as_str().to_owned()),
            selector: Some(names::selector_labels(&cluster.name)),
            ports: Some(vec![
                port(RESP_PORT_NAME, service.port, RESP_PORT_NAME),
                port(HTTP_PORT_NAME, service.http_port, HTTP_PORT_NAME),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    #[test]
    fn headless_service_publishes_not_ready_peers() {
        let service = build_headless_service(&validated(serde_json::json!({})));
        assert_eq!(service.metadata.name.as_deref(), Some("demo-headless"));
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(names::selector_labels("demo")));
        let ports = spec.ports.unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].name.as_deref(), Some("peer"));
        assert_eq!(ports[0].port, 7379);
    }

    #[test]
    fn client_service_has_resp_and_http() {
        let service = build_client_service(&validated(
            serde_json::json!({"service": {"type": "LoadBalancer", "annotations": {"a": "b"}}}),
        ));
        assert_eq!(service.metadata.name.as_deref(), Some("demo"));
        assert_eq!(
            service
                .metadata
                .annotations
                .and_then(|a| a.get("a").cloned()),
            Some("b".to_owned())
        );
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.publish_not_ready_addresses, None);
        let ports: Vec<(String, i32)> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name.unwrap_or_default(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![("resp".to_owned(), 6379), ("http".to_owned(), 8080)]
        );
    }
}
