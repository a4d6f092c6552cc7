//! Helpers of the fault-injection suite (`tests/fault_*.rs`), tests in the style of Jepsen:
//! concurrent writers that record every acknowledged write ([`Workload`]), faults injected
//! between real `store-node` processes on 127.0.0.1 (through toxiproxy, [`Toxiproxy`], or the
//! node's test switches), and a check at the end that every acknowledged write is on every node
//! ([`check_every_node`]), with the figures each test prints ([`Figures`]).
//!
//! Every wait is bounded and polls its condition: these tests run on a loaded 2-core machine.

#![allow(dead_code)]

#[path = "../disc_support/mod.rs"]
pub mod disc_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use disc_support::{free_port, Node, TempDir};

/// The toxiproxy server binary: `TOXIPROXY_SERVER`, else the one `hack/toxiproxy.sh`
/// installs from the Go module proxy into the project cache (once per version; the test
/// command runs it first, so a test only pays for it when run on its own on a fresh machine).
pub fn toxiproxy_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Ok(path) = std::env::var("TOXIPROXY_SERVER") {
            return PathBuf::from(path);
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/toxiproxy.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("hack/toxiproxy.sh runs");
        assert!(
            output.status.success(),
            "hack/toxiproxy.sh could not install toxiproxy (see above)"
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// A toxiproxy server on 127.0.0.1 and its proxies; killed on drop.
pub struct Toxiproxy {
    api: u16,
    child: Option<Child>,
}

/// A toxic's direction: `upstream` is what the dialing node sends, `downstream` what it
/// receives.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// From the dialer to the acceptor.
    Upstream,
    /// From the acceptor to the dialer.
    Downstream,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

impl Toxiproxy {
    /// Starts the server and waits until its API answers.
    pub fn start() -> Toxiproxy {
        let api = free_port();
        let child = Command::new(toxiproxy_binary())
            .args(["-host", "127.0.0.1", "-port", &api.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("toxiproxy starts");
        let proxy = Toxiproxy {
            api,
            child: Some(child),
        };
        assert!(
            eventually(Duration::from_secs(30), || proxy
                .call("GET", "/version", "")
                .is_some_and(|(status, _)| status == 200)),
            "toxiproxy's API does not answer on port {api}"
        );
        proxy
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        http(self.api, method, path, body)
    }

    fn expect(&self, method: &str, path: &str, body: &str, statuses: &[u16]) {
        let answer = self.call(method, path, body);
        assert!(
            answer
                .as_ref()
                .is_some_and(|(status, _)| statuses.contains(status)),
            "toxiproxy {method} {path} {body}: {answer:?}"
        );
    }

    /// A proxy named `name` listening on a fresh port to `upstream`; returns its address.
    pub fn proxy(&self, name: &str, upstream: &str) -> String {
        let listen = format!("127.0.0.1:{}", free_port());
        let body = serde_json::json!({
            "name": name, "listen": listen, "upstream": upstream, "enabled": true,
        });
        self.expect("POST", "/proxies", &body.to_string(), &[201]);
        listen
    }

    /// Enables or disables a proxy: disabled, it closes its connections and refuses new ones
    /// (a partition of that direction of dialing).
    pub fn set_enabled(&self, name: &str, enabled: bool) {
        let body = serde_json::json!({ "enabled": enabled });
        self.expect(
            "POST",
            &format!("/proxies/{name}"),
            &body.to_string(),
            &[200],
        );
    }

    /// Adds a toxic (`kind` with `attributes`) to one direction of a proxy.
    pub fn add_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        kind: &str,
        stream: Stream,
        attributes: serde_json::Value,
    ) {
        let body = serde_json::json!({
            "name": toxic, "type": kind, "stream": stream.as_str(), "toxicity": 1.0,
            "attributes": attributes,
        });
        self.expect(
            "POST",
            &format!("/proxies/{proxy}/toxics"),
            &body.to_string(),
            &[200],
        );
    }

    /// Removes a toxic.
    pub fn remove_toxic(&self, proxy: &str, toxic: &str) {
        self.expect(
            "DELETE",
            &format!("/proxies/{proxy}/toxics/{toxic}"),
            "",
            &[204],
        );
    }

    /// Enables every proxy and removes every toxic.
    pub fn heal(&self) {
        self.expect("POST", "/reset", "", &[204]);
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `count` ram or disc nodes whose links to each other all go through toxiproxy: one proxy
/// per ordered pair, named `<from>-><to>`, and each node's `--peers` lists only its proxies,
/// so no byte between two nodes bypasses the faults.
pub struct ProxiedCluster {
    pub nodes: Vec<Node>,
    pub proxy: Toxiproxy,
    /// Each node's `--peers`: the proxies it dials.
    pub peers: Vec<Vec<String>>,
    _dirs: Vec<TempDir>,
}

impl ProxiedCluster {
    /// Starts toxiproxy and `count` ram nodes with `extra` flags, and waits until all are ready.
    pub fn start(count: usize, extra: &[&str]) -> ProxiedCluster {
        let proxy = Toxiproxy::start();
        let dirs: Vec<TempDir> = (0..count)
            .map(|index| TempDir::new(&format!("fault-{index}")))
            .collect();
        let mut nodes: Vec<Node> = dirs
            .iter()
            .enumerate()
            .map(|(index, dir)| Node::new(index, &dir.0))
            .collect();
        let peers: Vec<Vec<String>> = (0..count)
            .map(|from| {
                (0..count)
                    .filter(|to| *to != from)
                    .map(|to| proxy.proxy(&pair(from, to), &nodes[to].peer_address()))
                    .collect()
            })
            .collect();
        for (node, peers) in nodes.iter_mut().zip(&peers) {
            node.start(peers, extra);
        }
        for node in &nodes {
            node.wait_ready(Duration::from_secs(60));
        }
        ProxiedCluster {
            nodes,
            proxy,
            peers,
            _dirs: dirs,
        }
    }
}

/// The name of the proxy node `from` dials node `to` through.
pub fn pair(from: usize, to: usize) -> String {
    format!("d-{from}->d-{to}")
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status, body), `None` when it gets no answer.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
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

/// Polls `check` every 50 ms until it holds or `within` passes; returns whether it held.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A node's `/v1/status` document.
pub fn status(node: &Node) -> serde_json::Value {
    node.http_get("/v1/status")
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or_default()
}

/// A counter or gauge of a node's `/metrics` (0 when absent).
pub fn metric(node: &Node, name: &str) -> f64 {
    node.http_get("/metrics")
        .map(|(_, body)| {
            body.lines()
                .find_map(|line| {
                    let (metric, value) = line.rsplit_once(' ')?;
                    (metric == name).then(|| value.parse().ok()).flatten()
                })
                .unwrap_or(0.0)
        })
        .unwrap_or(0.0)
}

/// What the writers of a [`Workload`] recorded: every acknowledged write (key → value), and
/// the writes that got an error (not acknowledged: they may or may not have taken effect).
#[derive(Debug, Default)]
pub struct History {
    pub acknowledged: BTreeMap<String, String>,
    pub errors: usize,
    pub error_kinds: BTreeMap<String, usize>,
}

/// Concurrent writers, one per node, each writing fresh keys `<tag>:<node>:<n>` with `SET`
/// (a Jepsen "set" workload: every acknowledged add must be present in the end), a few
/// milliseconds apart, until stopped or `max_writes` each.
pub struct Workload {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
    history: Arc<Mutex<History>>,
}

impl Workload {
    /// Starts one writer per node, values of about 70 bytes.
    pub fn start(tag: &str, nodes: &[Node], max_writes: usize) -> Workload {
        Workload::start_sized(tag, nodes, max_writes, 64)
    }

    /// Starts one writer per node, values of about `value_bytes` bytes.
    pub fn start_sized(
        tag: &str,
        nodes: &[Node],
        max_writes: usize,
        value_bytes: usize,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::default()));
        let writers = nodes
            .iter()
            .map(|node| {
                let (stop, history) = (stop.clone(), history.clone());
                let (port, name, tag) = (node.resp, node.name.clone(), tag.to_string());
                std::thread::spawn(move || {
                    write_loop(port, &name, &tag, max_writes, value_bytes, &stop, &history)
                })
            })
            .collect();
        Workload {
            stop,
            writers,
            history,
        }
    }

    /// Acknowledged writes so far.
    pub fn acknowledged(&self) -> usize {
        self.history
            .lock()
            .map_or(0, |history| history.acknowledged.len())
    }

    /// Stops the writers and returns what they recorded.
    pub fn finish(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            let _ = writer.join();
        }
        match Arc::try_unwrap(self.history) {
            Ok(history) => history.into_inner().unwrap_or_default(),
            Err(shared) => std::mem::take(&mut *shared.lock().expect("history")),
        }
    }
}

fn connect(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    connection
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    connection
        .set_write_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    Some(connection)
}

fn write_loop(
    port: u16,
    node: &str,
    tag: &str,
    max_writes: usize,
    value_bytes: usize,
    stop: &AtomicBool,
    history: &Mutex<History>,
) {
    let mut connection = None;
    for index in 0..max_writes {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if connection.is_none() {
            connection = connect(port);
        }
        let Some(open) = connection.as_mut() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let key = format!("{tag}:{node}:{index}");
        let value = format!("{index}-{}", "x".repeat(value_bytes));
        let result: redis::RedisResult<()> = redis::cmd("SET").arg(&key).arg(&value).query(open);
        let Ok(mut recorded) = history.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                recorded.acknowledged.insert(key, value);
            }
            Err(error) => {
                recorded.errors += 1;
                let kind = error.code().unwrap_or("io").to_string();
                *recorded.error_kinds.entry(kind).or_default() += 1;
                if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
                    connection = None;
                }
            }
        }
        drop(recorded);
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// The acknowledged writes (key → value) missing from `node`, or holding another value.
pub fn missing_on(node: &Node, expected: &BTreeMap<String, String>) -> Option<usize> {
    let mut connection = connect(node.resp)?;
    let keys: Vec<&String> = expected.keys().collect();
    let mut missing = 0;
    for chunk in keys.chunks(500) {
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(chunk).query(&mut connection).ok()?;
        missing += chunk
            .iter()
            .zip(values)
            .filter(|(key, value)| value.as_deref() != expected.get(**key).map(String::as_str))
            .count();
    }
    Some(missing)
}

/// Waits (at most `within`) until every node holds every write in `expected`; returns how
/// long that took and, per node, how many were still missing at the end.
pub fn check_every_node(
    nodes: &[&Node],
    expected: &BTreeMap<String, String>,
    within: Duration,
) -> (Duration, Vec<usize>) {
    let started = Instant::now();
    let mut missing = vec![expected.len(); nodes.len()];
    eventually(within, || {
        for (index, node) in nodes.iter().enumerate() {
            if missing[index] > 0 {
                missing[index] = missing_on(node, expected).unwrap_or(missing[index]);
            }
        }
        missing.iter().all(|count| *count == 0)
    });
    (started.elapsed(), missing)
}

/// The figures a fault test prints: one line per scenario, easy to grep (`figures:`).
pub struct Figures<'a> {
    pub scenario: &'a str,
    pub history: &'a History,
    pub lost: &'a [usize],
    pub converged_in: Duration,
    pub extra: String,
}

impl Figures<'_> {
    /// Prints the line.
    pub fn print(&self) {
        eprintln!(
            "figures: {}: writes acknowledged {}, not acknowledged {} {:?}, lost per node {:?}, every acknowledged write on every node {:.2} s after the fault ended{}{}",
            self.scenario,
            self.history.acknowledged.len(),
            self.history.errors,
            self.history.error_kinds,
            self.lost,
            self.converged_in.as_secs_f64(),
            if self.extra.is_empty() { "" } else { "; " },
            self.extra
        );
    }
}
