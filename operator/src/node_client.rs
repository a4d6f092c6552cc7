//! Talking to store-node pods over HTTP: `GET /v1/status` (the shared
//! [`sessionstore_api::node_status::NodeStatus`] document) for the members in status and
//! `POST /v1/cluster/leave` before a scale-down. Behind the [`NodeApi`] trait so reconcile tests
//! inject a fake. The real client is a plain hyper client (already in the tree through kube).

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
        /// `ip:port`.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// The node answered with an unexpected status code.
    #[error("node at {address} answered {status} to {path}")]
    Status {
        /// `ip:port`.
        address: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
    },
    /// The status body did not parse.
    #[error("failed to parse the status of node at {address}: {message}")]
    Body {
        /// `ip:port`.
        address: String,
        /// Parse error.
        message: String,
    },
}

/// The calls the operator makes to a node, addressed as `ip:port` of its HTTP port.
pub trait NodeApi: Send + Sync {
    /// `GET /v1/status`.
    fn status(&self, address: String) -> BoxFuture<'static, Result<NodeStatus, NodeError>>;
    /// `POST /v1/cluster/leave`, with the password when auth is on.
    fn leave(
        &self,
        address: String,
        password: Option<String>,
    ) -> BoxFuture<'static, Result<(), NodeError>>;
}

/// [`NodeApi`] over plain HTTP with hyper.
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
        request: http::Request<Full<Bytes>>,
        address: String,
    ) -> Result<(u16, Bytes), NodeError> {
        let unreachable = |message: String| NodeError::Unreachable {
            address: address.clone(),
            message,
        };
        let work = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
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
}

impl NodeApi for HttpNodeApi {
    fn status(&self, address: String) -> BoxFuture<'static, Result<NodeStatus, NodeError>> {
        let client = self.client.clone();
        Box::pin(async move {
            let request = http::Request::get(format!("http://{address}/v1/status"))
                .body(Full::new(Bytes::new()))
                .map_err(|e| NodeError::Unreachable {
                    address: address.clone(),
                    message: e.to_string(),
                })?;
            let (status, body) = Self::call(client, request, address.clone()).await?;
            if status != 200 {
                return Err(NodeError::Status {
                    address,
                    path: "/v1/status".into(),
                    status,
                });
            }
            serde_json::from_slice(&body).map_err(|e| NodeError::Body {
                address,
                message: e.to_string(),
            })
        })
    }

    fn leave(
        &self,
        address: String,
        password: Option<String>,
    ) -> BoxFuture<'static, Result<(), NodeError>> {
        let client = self.client.clone();
        Box::pin(async move {
            let mut builder = http::Request::post(format!("http://{address}/v1/cluster/leave"));
            if let Some(password) = password {
                builder = builder.header("authorization", format!("Bearer {password}"));
            }
            let request =
                builder
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| NodeError::Unreachable {
                        address: address.clone(),
                        message: e.to_string(),
                    })?;
            let (status, _) = Self::call(client, request, address.clone()).await?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(NodeError::Status {
                    address,
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
}
