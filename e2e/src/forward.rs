//! Port-forwards through the API server (`pods/portforward`), so the test process reaches pods
//! on any cluster. A [`Forwarder`] listens on `127.0.0.1:<random>`; every accepted connection
//! gets its own port-forward stream, so ordinary clients (the `redis` crate, the HTTP client)
//! connect to [`Forwarder::addr`] as if it were the server.
//!
//! A Service forwarder resolves the Service's EndpointSlices for every new connection and picks
//! the next *ready* endpoint round-robin, as kube-proxy would: a connection "through the client
//! Service" reaches only pods the Service would route to at that moment.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where connections go.
#[derive(Debug, Clone)]
enum Target {
    /// One pod, one port.
    Pod { pod: String, port: u16 },
    /// A ready endpoint of a Service port (by port name).
    Service { service: String, port_name: String },
}

/// A local listener forwarding each connection to a pod or a Service's ready endpoint.
#[derive(Debug)]
pub struct Forwarder {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Forwarder {
    /// Forwards to `port` of pod `pod`.
    pub async fn pod(
        client: &Client,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> anyhow::Result<Self> {
        Self::start(
            client,
            namespace,
            Target::Pod {
                pod: pod.to_owned(),
                port,
            },
        )
        .await
    }

    /// Forwards to the Service `service`'s port named `port_name` (e.g. `resp`, `http`), one
    /// ready endpoint per connection, round-robin.
    pub async fn service(
        client: &Client,
        namespace: &str,
        service: &str,
        port_name: &str,
    ) -> anyhow::Result<Self> {
        Self::start(
            client,
            namespace,
            Target::Service {
                service: service.to_owned(),
                port_name: port_name.to_owned(),
            },
        )
        .await
    }

    async fn start(client: &Client, namespace: &str, target: Target) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind a local port for port-forwarding")?;
        let addr = listener.local_addr()?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let next = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((connection, _)) = listener.accept().await else {
                    return;
                };
                let pods = pods.clone();
                let slices = slices.clone();
                let target = target.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    // A failed forward closes the local connection: the client sees a
                    // connection error, which is what a test counts.
                    if let Err(error) = forward(connection, &pods, &slices, &target, &next).await {
                        tracing::debug!(%error, "port-forward connection failed");
                    }
                });
            }
        });
        Ok(Self { addr, accept })
    }

    /// The local address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    mut connection: TcpStream,
    pods: &Api<Pod>,
    slices: &Api<EndpointSlice>,
    target: &Target,
    next: &AtomicUsize,
) -> anyhow::Result<()> {
    let (pod, port) = match target {
        Target::Pod { pod, port } => (pod.clone(), *port),
        Target::Service { service, port_name } => {
            let ready = ready_endpoints(slices, service, port_name).await?;
            if ready.is_empty() {
                bail!("Service {service} has no ready endpoint");
            }
            let index = next.fetch_add(1, Ordering::Relaxed) % ready.len();
            ready[index].clone()
        }
    };
    let mut forwarder = pods
        .portforward(&pod, &[port])
        .await
        .with_context(|| format!("port-forward to {pod}:{port}"))?;
    let mut upstream = forwarder
        .take_stream(port)
        .with_context(|| format!("port-forward to {pod}:{port} has no stream"))?;
    let _ = tokio::io::copy_bidirectional(&mut connection, &mut upstream).await;
    drop(upstream);
    let _ = forwarder.join().await;
    Ok(())
}

/// `(pod, port)` of every ready endpoint of `service`'s port `port_name`, sorted by pod name.
pub async fn ready_endpoints(
    slices: &Api<EndpointSlice>,
    service: &str,
    port_name: &str,
) -> anyhow::Result<Vec<(String, u16)>> {
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await?;
    let mut ready = Vec::new();
    for slice in list {
        let Some(port) = slice
            .ports
            .as_ref()
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(port_name)))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let is_ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false);
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            if let (true, Some(pod)) = (is_ready, pod) {
                ready.push((pod, port as u16));
            }
        }
    }
    ready.sort();
    ready.dedup();
    Ok(ready)
}
