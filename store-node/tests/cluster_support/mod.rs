//! Helpers of the multi-process cluster tests: real `store-node` processes on 127.0.0.1 with
//! OS-chosen free ports and `--peers`, driven with the `redis` crate and a minimal HTTP client.
//!
//! These tests run in CI on a loaded 2-core machine next to other builds, so every wait here is
//! generous but bounded, and a failure says which node, and whether its process is still alive.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bound on getting a working Redis connection to a node that should be serving.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(30);

/// The store-node binary every start of this test process runs.
///
/// `CARGO_BIN_EXE_store-node` lives in the shared target directory, which another `cargo build`
/// relinks while a test runs (cargo holds its lock only while building). A node restarted after
/// that would run a different build than its peers, or fail to spawn mid-relink. A hard link
/// (a copy across filesystems) taken once keeps this process on the build it was compiled with.
pub fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let original = PathBuf::from(env!("CARGO_BIN_EXE_store-node"));
        let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_binaries(&directory);
        let pinned = directory.join(format!("store-node.{}", std::process::id()));
        let _ = std::fs::remove_file(&pinned);
        if std::fs::hard_link(&original, &pinned).is_ok()
            || std::fs::copy(&original, &pinned).is_ok()
        {
            pinned
        } else {
            original
        }
    })
}

/// Removes the pinned binaries of test processes that no longer run.
fn remove_stale_binaries(directory: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("store-node."))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A free port on 127.0.0.1 below the OS's ephemeral range.
///
/// A node's ports are free whenever it is down (before its first start, during a restart), and
/// `127.0.0.1:0` binds and outgoing connections of any process on the machine (other test
/// binaries, other builds' tests, other nodes) take ports from the ephemeral range: a port the
/// OS handed out and took back can be someone else's by the time the node binds it, and the
/// node then fails with `Address already in use`. No automatic allocation hands out a port below
/// the range, so only an explicit bind of the same port (picked at random) can collide.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, last) = if low > 12_000 {
        (10_000, low - 1)
    } else {
        (61_001, 65_535)
    };
    // Ports already given to a node of this process are taken even while that node is down.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port list");
    let random = RandomState::new();
    for attempt in 0u64..1000 {
        let port = first
            + (random.hash_one((std::process::id(), attempt)) % u64::from(last - first)) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {first}..{last}")
}

/// One node's identity and ports; survives restarts (same name, same ports).
pub struct Node {
    pub name: String,
    pub resp: u16,
    pub http: u16,
    pub peer: u16,
    /// Where the process's log (its stdout) goes; nowhere when `None`.
    pub log: Option<PathBuf>,
    child: Option<Child>,
    pid: Option<u32>,
}

impl Node {
    /// A node named `t-<index>` with fresh ports (not started).
    pub fn new(index: usize) -> Node {
        Node {
            name: format!("t-{index}"),
            resp: free_port(),
            http: free_port(),
            peer: free_port(),
            log: None,
            child: None,
            pid: None,
        }
    }

    /// The running process's id (panics when not started).
    pub fn pid(&self) -> u32 {
        self.pid.expect("the node was started")
    }

    /// `127.0.0.1:<peer port>`.
    pub fn peer_address(&self) -> String {
        format!("127.0.0.1:{}", self.peer)
    }

    /// Starts the process with `--peers` and extra flags.
    pub fn start(&mut self, peers: &[String], extra: &[&str]) {
        let mut command = Command::new(binary());
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
            .stdout(match &self.log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::null(),
            })
            .stderr(Stdio::inherit());
        let child = command.spawn().expect("store-node starts");
        self.pid = Some(child.id());
        self.child = Some(child);
    }

    /// `running`, `exited` (a zombie not yet reaped) or `not started`, for failure messages.
    pub fn process_state(&self) -> &'static str {
        match self.pid {
            None => "not started",
            Some(pid) => match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat)
                    if stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('Z')) =>
                {
                    "exited"
                }
                Ok(_) => "running",
                Err(_) => "exited",
            },
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGTERM, then waits (bounded) for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> bool {
        terminate_child(&mut self.child, within)
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

    /// Waits until ready; panics with the last `/readyz` answer after `within`, or at once
    /// when the process has exited.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_ready() {
                return;
            }
            assert_ne!(
                self.process_state(),
                "exited",
                "{} exited before it was ready (see its log above)",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} not ready within {within:?} (process {}): {:?}",
            self.name,
            self.process_state(),
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

    /// A fresh synchronous Redis connection, retried for [`CONNECT_WITHIN`]: on a loaded
    /// machine the TCP connect plus the client's setup round trip (`CLIENT SETINFO`) can take
    /// longer than one short attempt. Commands on it time out after [`CONNECT_WITHIN`] too, so
    /// a stuck node fails the test instead of hanging it.
    pub fn redis(&self) -> redis::Connection {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.resp)).expect("valid url");
        let deadline = Instant::now() + CONNECT_WITHIN;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match client.get_connection_with_timeout(Duration::from_secs(5)) {
                Ok(connection) => {
                    connection
                        .set_read_timeout(Some(CONNECT_WITHIN))
                        .expect("read timeout");
                    connection
                        .set_write_timeout(Some(CONNECT_WITHIN))
                        .expect("write timeout");
                    return connection;
                }
                Err(error) => error,
            };
            if Instant::now() >= deadline || self.process_state() == "exited" {
                panic!(
                    "{} (RESP port {}, process {}) gave no Redis connection in {attempts} attempt(s) within {CONNECT_WITHIN:?}: {error}; /readyz: {:?}",
                    self.name,
                    self.resp,
                    self.process_state(),
                    self.http_get("/readyz")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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
        node.wait_ready(Duration::from_secs(60));
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

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status, body), `None` when it gets no answer.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5)).ok()?;
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

/// SIGKILLs the process in `slot` (if any) and reaps it; `slot` is left empty.
pub fn kill_child(slot: &mut Option<Child>) {
    if let Some(mut child) = slot.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGTERMs the process in `slot` (if any), waits up to `within` for it to exit, SIGKILLs it
/// otherwise; returns whether it exited successfully by itself. `slot` is left empty.
pub fn terminate_child(slot: &mut Option<Child>, within: Duration) -> bool {
    let Some(mut child) = slot.take() else {
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
