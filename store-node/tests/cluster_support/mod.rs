//! Helpers of the multi-process cluster tests: real `store-node` processes on 127.0.0.1 with
//! OS-chosen free ports and `--peers`, driven with the `redis` crate and a minimal HTTP client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port the OS just handed out (and released): good enough on loopback for tests.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// One node's identity and ports; survives restarts (same name, same ports).
pub struct Node {
    pub name: String,
    pub resp: u16,
    pub http: u16,
    pub peer: u16,
    child: Option<Child>,
}

impl Node {
    /// A node named `t-<index>` with fresh ports (not started).
    pub fn new(index: usize) -> Node {
        Node {
            name: format!("t-{index}"),
            resp: free_port(),
            http: free_port(),
            peer: free_port(),
            child: None,
        }
    }

    /// `127.0.0.1:<peer port>`.
    pub fn peer_address(&self) -> String {
        format!("127.0.0.1:{}", self.peer)
    }

    /// Starts the process with `--peers` and extra flags.
    pub fn start(&mut self, peers: &[String], extra: &[&str]) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_store-node"));
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--resp-port", &self.resp.to_string()])
            .args(["--http-port", &self.http.to_string()])
            .args(["--peer-port", &self.peer.to_string()])
            .args(["--node-name", &self.name])
            .args(["--peers", &peers.join(",")])
            .args(["--first-start-wait-ms", "1500"])
            .args(["--anti-entropy-interval-ms", "2000"])
            .args(["--shutdown-timeout", "5"])
            .args(["--log-level", "warn"])
            .args(extra)
            .env_remove("POD_NAME")
            .env_remove("POD_IP")
            .env_remove("CLUSTER_SERVICE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        self.child = Some(command.spawn().expect("store-node starts"));
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// `GET path` on the HTTP port: (status, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http(self.http, "GET", path, "")
    }

    /// `POST path` with a JSON body.
    pub fn http_post(&self, path: &str, body: &str) -> Option<(u16, String)> {
        http(self.http, "POST", path, body)
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.http_get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    }

    /// Waits until ready; panics with the last `/readyz` answer after `within`.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} not ready within {within:?}: {:?}",
            self.name,
            self.http_get("/readyz")
        );
    }

    /// The node's replication digest from `/v1/cluster`.
    pub fn digest(&self) -> Option<String> {
        let (_, body) = self.http_get("/v1/cluster")?;
        let value: serde_json::Value = serde_json::from_str(&body).ok()?;
        value["members"]
            .as_array()?
            .iter()
            .find(|member| member["self"] == true)?["digest"]
            .as_str()
            .map(str::to_string)
    }

    /// A fresh synchronous Redis connection.
    pub fn redis(&self) -> redis::Connection {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.resp)).expect("valid url");
        client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connects")
    }

    /// A Redis connection, or `None` when the node does not answer.
    pub fn try_redis(&self) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.resp))
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `count` nodes (not started) and the peer list naming all of them.
pub fn nodes(count: usize) -> (Vec<Node>, Vec<String>) {
    let nodes: Vec<Node> = (0..count).map(Node::new).collect();
    let peers = nodes.iter().map(Node::peer_address).collect();
    (nodes, peers)
}

/// Starts every node and waits until all are ready.
pub fn start_all(nodes: &mut [Node], peers: &[String], extra: &[&str]) {
    for node in nodes.iter_mut() {
        node.start(peers, extra);
    }
    for node in nodes.iter() {
        node.wait_ready(Duration::from_secs(20));
    }
}

/// Polls `check` until it is true or `within` passes; returns whether it became true.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every node reports the same digest.
pub fn same_digest(nodes: &[&Node]) -> bool {
    let digests: Vec<Option<String>> = nodes.iter().map(|node| node.digest()).collect();
    digests[0].is_some() && digests.iter().all(|digest| *digest == digests[0])
}

fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}
