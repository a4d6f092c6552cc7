//! Talking to store-node pods over HTTP, or HTTPS when the cluster has TLS: `GET /v1/status`
//! (the shared [`sessionstore_api::node_status::NodeStatus`] document) for the members in
//! status and `POST /v1/cluster/leave` (with the operator's token) before a scale-down. Behind
//! the [`NodeApi`] trait so reconcile tests inject a fake. The real client is hyper (already in
//! the tree through kube); over TLS it verifies the node's certificate against the cluster's CA
//! for the pod's DNS name, although it connects to the pod's IP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sessionstore_api::node_status::NodeStatus;

/// Bound on one call to a node.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A failed call to a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Connecting or sending failed, or the call timed out.
    #[error("failed to reach node at {address}: {message}")]
    Unreachable {
        /// The node's address as [`NodeAddress`] shows it.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// The node answered with an unexpected status code.
    #[error("node at {address} answered {status} to {path}")]
    Status {
        /// The node's address as [`NodeAddress`] shows it.
        address: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
    },
    /// The status body did not parse.
    #[error("failed to parse the status of node at {address}: {message}")]
    Body {
        /// The node's address as [`NodeAddress`] shows it.
        address: String,
        /// Parse error.
        message: String,
    },
}

/// How to verify a node's certificate: the cluster's CA and the name the node's certificate
/// must carry.
#[derive(Clone)]
pub struct NodeTls {
    /// The pod's DNS name through the headless Service.
    pub server_name: String,
    /// A client configuration trusting the cluster's CA.
    pub config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for NodeTls {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name && Arc::ptr_eq(&self.config, &other.config)
    }
}

/// Where a node's HTTP port is: `ip:port`, and TLS when the cluster has it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeAddress {
    /// `ip:port` (`[ip]:port` for IPv6).
    pub socket: String,
    /// HTTPS, when set.
    pub tls: Option<NodeTls>,
}

impl NodeAddress {
    /// A plain HTTP address.
    pub fn plain(socket: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            tls: None,
        }
    }
}

impl std::fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls {
            Some(tls) => write!(f, "https://{} ({})", self.socket, tls.server_name),
            None => write!(f, "http://{}", self.socket),
        }
    }
}

/// The roots of a PEM bundle of CA certificates, or what is wrong with it.
pub fn root_store(ca_pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        let certificate = certificate.map_err(|error| format!("ca.crt: {error}"))?;
        roots
            .add(certificate)
            .map_err(|error| format!("ca.crt: {error}"))?;
    }
    if roots.is_empty() {
        return Err("ca.crt holds no certificate".to_owned());
    }
    Ok(roots)
}

/// A TLS client configuration trusting the CA certificates of `ca_pem`, presenting no client
/// certificate (the node asks HTTP clients for none on the operator's endpoints).
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = root_store(ca_pem)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The calls the operator makes to a node's HTTP port.
pub trait NodeApi: Send + Sync {
    /// `GET /v1/status`.
    fn status(&self, address: NodeAddress) -> BoxFuture<'static, Result<NodeStatus, NodeError>>;
    /// `POST /v1/cluster/leave`, with the operator's token.
    fn leave(
        &self,
        address: NodeAddress,
        token: Option<String>,
    ) -> BoxFuture<'static, Result<(), NodeError>>;
}

/// [`NodeApi`] over HTTP or HTTPS with hyper.
#[derive(Clone)]
pub struct HttpNodeApi {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpNodeApi {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(NODE_CALL_TIMEOUT));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl HttpNodeApi {
    async fn call(
        client: Client<HttpConnector, Full<Bytes>>,
        address: NodeAddress,
        method: http::Method,
        path: &'static str,
        token: Option<String>,
    ) -> Result<(u16, Bytes), NodeError> {
        let unreachable = |message: String| NodeError::Unreachable {
            address: address.to_string(),
            message,
        };
        let uri = match &address.tls {
            // Over a connection of our own the request line carries the path only.
            Some(_) => path.to_owned(),
            None => format!("http://{}{path}", address.socket),
        };
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(tls) = &address.tls {
            builder = builder.header(http::header::HOST, tls.server_name.as_str());
        }
        if let Some(token) = token {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(e.to_string()))?;
        let work = async {
            let response = match &address.tls {
                None => client
                    .request(request)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?,
                Some(tls) => Self::send_tls(&address.socket, tls, request)
                    .await
                    .map_err(unreachable)?,
            };
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(NODE_CALL_TIMEOUT, work)
            .await
            .map_err(|_| unreachable("timed out".to_owned()))?
    }

    /// One request over a fresh TLS connection (the operator calls each node every few
    /// seconds at most; a pool would keep a connection per node open for nothing).
    async fn send_tls(
        socket: &str,
        tls: &NodeTls,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let stream = tokio::net::TcpStream::connect(socket)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
            .map_err(|e| format!("server name {}: {e}", tls.server_name))?;
        let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }
}

impl NodeApi for HttpNodeApi {
    fn status(&self, address: NodeAddress) -> BoxFuture<'static, Result<NodeStatus, NodeError>> {
        let client = self.client.clone();
        Box::pin(async move {
            let shown = address.to_string();
            let (status, body) =
                Self::call(client, address, http::Method::GET, "/v1/status", None).await?;
            if status != 200 {
                return Err(NodeError::Status {
                    address: shown,
                    path: "/v1/status".into(),
                    status,
                });
            }
            serde_json::from_slice(&body).map_err(|e| NodeError::Body {
                address: shown,
                message: e.to_string(),
            })
        })
    }

    fn leave(
        &self,
        address: NodeAddress,
        token: Option<String>,
    ) -> BoxFuture<'static, Result<(), NodeError>> {
        let client = self.client.clone();
        Box::pin(async move {
            let shown = address.to_string();
            let (status, _) = Self::call(
                client,
                address,
                http::Method::POST,
                "/v1/cluster/leave",
                token,
            )
            .await?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(NodeError::Status {
                    address: shown,
                    path: "/v1/cluster/leave".into(),
                    status,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use sessionstore_api::node_status::PeerReport;

    use super::*;

    /// The document a real store-node serves (built by its own status code from a running
    /// node's state, with keys and the memory limit set) is read by the operator's client into
    /// the values the node reported, and writes back the same JSON (docs/contract.md).
    #[test]
    fn reads_what_store_node_writes() -> anyhow::Result<()> {
        use std::sync::Arc;

        use store_node::store::{EngineConfig, MemoryEngine, Op, Value};

        let engine = Arc::new(MemoryEngine::new(EngineConfig {
            limit_bytes: 268_435_456,
            ..EngineConfig::default()
        }));
        for index in 0..42 {
            let _ = engine.apply(
                &Op::Put {
                    key: format!("sess:{index}").into(),
                    value: Value::String("{}".into()),
                    expire_at: None,
                    keep_ttl: false,
                },
                store_node::store::unix_ms(),
            );
        }
        let mut config = store_node::config::Config::for_tests();
        config.node_name = Some("demo-0".into());
        let state = store_node::node::NodeState::new(config, engine, None);
        let document = serde_json::to_value(store_node::net::http::node_status(&state))?;
        let read: NodeStatus = serde_json::from_value(document.clone())?;
        assert_eq!(read.node_name, "demo-0");
        assert_eq!(read.state, "ready");
        assert_eq!(read.keys, 42);
        assert_eq!(
            (
                read.memory.limit_bytes,
                read.memory.high_watermark_bytes,
                read.memory.low_watermark_bytes,
                read.memory.alarm,
                read.memory.eviction_policy.as_str(),
            ),
            (268_435_456, 187_904_819, 164_416_716, false, "noeviction")
        );
        assert!(read.memory.used_bytes > 0);
        assert_eq!(read.peers, Vec::<PeerReport>::new());
        assert_eq!(read.storage.mode, "ram");
        assert_eq!(serde_json::to_value(&read)?, document);
        Ok(())
    }

    /// The operator's HTTPS client against a real store-node serving the certificate the
    /// operator issues: the status is read when the node's certificate chains to the CA for
    /// the pod's name, refused for a CA that did not sign it; the leave call needs the
    /// operator's token (401 without it, accepted with it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_to_a_real_node_verifies_the_cluster_ca_and_leave_needs_the_token(
    ) -> anyhow::Result<()> {
        use crate::resources::certificate::{issue_ca, issue_node};

        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let ca = issue_ca("demo", "apps", now)?;
        let node = issue_node("demo", "apps", &ca.key_pem, now)?;
        let dir = std::env::temp_dir().join(format!("operator-https-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = |name: &str, contents: &str| -> anyhow::Result<std::path::PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, contents)?;
            Ok(path)
        };
        let mut config = store_node::config::Config::for_tests();
        config.node_name = Some("demo-0".into());
        config.tls_cert_file = Some(file("tls.crt", &node.cert_pem)?);
        config.tls_key_file = Some(file("tls.key", &node.key_pem)?);
        config.tls_ca_cert_file = Some(file("ca.crt", &ca.cert_pem)?);
        config.tls_auth_clients = store_node::config::ClientAuth::No;
        config.tls_http = true;
        config.operator_token_file = Some(file("token", "s3cret-token\n")?);
        let running = store_node::server::start(config).await?;
        let api = HttpNodeApi::default();
        let address = |ca_pem: &str, name: &str| -> anyhow::Result<NodeAddress> {
            Ok(NodeAddress {
                socket: running.http_addr.to_string(),
                tls: Some(NodeTls {
                    server_name: name.to_owned(),
                    config: client_config(ca_pem.as_bytes()).map_err(anyhow::Error::msg)?,
                }),
            })
        };
        let pod = address(&ca.cert_pem, "demo-0.demo-headless.apps.svc")?;
        let status = api.status(pod.clone()).await?;
        assert_eq!(
            (status.node_name.as_str(), status.state.as_str()),
            ("demo-0", "ready")
        );

        let other = issue_ca("demo", "apps", now)?;
        let refused = api
            .status(address(&other.cert_pem, "demo-0.demo-headless.apps.svc")?)
            .await;
        assert!(
            matches!(&refused, Err(NodeError::Unreachable { message, .. }) if message.starts_with("TLS handshake: ")),
            "{refused:?}"
        );
        let plain = api
            .status(NodeAddress::plain(running.http_addr.to_string()))
            .await;
        assert!(plain.is_err(), "plain HTTP to an HTTPS port: {plain:?}");

        let unauthorized = api.leave(pod.clone(), Some("wrong".into())).await;
        assert!(
            matches!(unauthorized, Err(NodeError::Status { status: 401, .. })),
            "{unauthorized:?}"
        );
        api.leave(pod, Some("s3cret-token".into())).await?;
        running.shutdown().await?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
