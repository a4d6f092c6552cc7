//! The security counters of `/metrics`: TLS (the served certificate's expiry, reloads,
//! failed handshakes), peers refused by reason, HTTP connections refused at the cap, and the
//! client buffers with the clients closed for them.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::node::NodeState;

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

/// Appends the security metrics of `state`.
pub fn encode(encoder: &mut DescriptorEncoder, state: &NodeState) -> Result<(), std::fmt::Error> {
    let metrics = &state.metrics;
    let limits = &state.client_limits;
    if let Some(tls) = &state.security.tls {
        if let Some(info) = tls.certificate() {
            gauge(
                encoder,
                "store_node_tls_certificate_expiry_timestamp_seconds",
                "When the served certificate expires (notAfter, Unix seconds)",
                info.not_after_unix,
            )?;
        }
        counter(
            encoder,
            "store_node_tls_certificate_reloads",
            "Times new TLS files were loaded without a restart",
            tls.reloads(),
        )?;
        counter(
            encoder,
            "store_node_tls_certificate_reload_failures",
            "Changed TLS files that could not be loaded (the previous ones stay in use)",
            tls.reload_failures(),
        )?;
    }
    counter(
        encoder,
        "store_node_tls_handshake_failures",
        "Client TLS handshakes (RESP and HTTP) that failed or timed out",
        metrics.tls_handshake_failures.load(Ordering::Relaxed),
    )?;
    {
        let mut family = encoder.encode_descriptor(
            "store_node_peer_connections_refused",
            "Peer connections refused: tls (no certificate of the cluster's CA), key (no or another peer key), hello (another cluster or protocol version)",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in state.security.peer_refusals.by_reason() {
            ConstCounter::new(count).encode(family.encode_family(&[("reason", reason)])?)?;
        }
    }
    counter(
        encoder,
        "store_node_http_rejected_connections",
        "HTTP connections closed at once at --http-max-connections",
        metrics.http_rejected_connections.load(Ordering::Relaxed),
    )?;
    gauge(
        encoder,
        "store_node_client_buffer_bytes",
        "Bytes held by the input and output buffers of RESP clients",
        limits.client_memory() as i64,
    )?;
    counter(
        encoder,
        "store_node_evicted_clients",
        "RESP clients closed because all clients' buffers exceeded maxmemory-clients",
        limits.evicted(),
    )?;
    counter(
        encoder,
        "store_node_client_query_buffer_limit_disconnections",
        "RESP clients closed because their query buffer exceeded client-query-buffer-limit",
        limits.query_buffer_disconnections(),
    )
}
