//! Helpers shared by the integration tests: start a node in-process on 127.0.0.1:0, talk raw
//! RESP to it, and call its HTTP router without sockets.

#![allow(dead_code)]

pub mod versus_redis;

use std::time::Duration;

use store_node::config::Config;
use store_node::protocol::decode::decode;
use store_node::protocol::Frame;
use store_node::server::{start, RunningNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts a node with test defaults adjusted by `adjust`.
pub async fn node_with(adjust: impl FnOnce(&mut Config)) -> RunningNode {
    let mut config = Config::for_tests();
    adjust(&mut config);
    start(config).await.expect("node starts")
}

/// Starts a node with test defaults.
pub async fn node() -> RunningNode {
    node_with(|_| {}).await
}

/// A `redis` crate multiplexed connection.
pub async fn client(node: &RunningNode) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{}/", node.resp_addr);
    redis::Client::open(url)
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects")
}

/// A raw TCP connection.
pub struct Raw {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    pub async fn connect(node: &RunningNode) -> Raw {
        Raw {
            stream: TcpStream::connect(node.resp_addr).await.expect("connects"),
            buffer: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one reply frame (5 s timeout).
    pub async fn frame(&mut self) -> Frame {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some((frame, used)) = decode(&self.buffer).expect("valid reply") {
                    self.buffer.drain(..used);
                    return frame;
                }
                self.buffer.reserve(65536);
                let read = self.stream.read_buf(&mut self.buffer).await.expect("read");
                assert!(read > 0, "connection closed while waiting for a reply");
            }
        })
        .await
        .expect("reply within 5 s")
    }

    /// Reads exactly `len` raw bytes.
    pub async fn bytes(&mut self, len: usize) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(5), async {
            while self.buffer.len() < len {
                self.buffer.reserve(65536);
                let read = self.stream.read_buf(&mut self.buffer).await.expect("read");
                assert!(
                    read > 0,
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
            }
            self.buffer.drain(..len).collect()
        })
        .await
        .expect("bytes within 5 s")
    }

    /// Sends a command and returns its raw reply bytes (exactly `expected.len()` bytes).
    pub async fn expect(&mut self, command: &[u8], expected: &[u8]) {
        self.send(command).await;
        let got = self.bytes(expected.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "reply to {:?}",
            String::from_utf8_lossy(command)
        );
    }

    /// Whether the server closed the connection (EOF within 5 s).
    pub async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Encodes a command as a RESP multibulk request.
pub fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{}\r\n", arg.len(), arg).as_bytes());
    }
    out
}

/// Calls the node's HTTP router in-process.
pub async fn http(
    node: &RunningNode,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
    bearer: Option<&str>,
) -> (u16, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            axum::body::Body::from(json.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let response = store_node::net::http::router(node.state.clone())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
