//! Helpers of the disc-mode tests: a real `store-node` process on 127.0.0.1 with OS-chosen
//! ports and a temporary `--data-dir`, restarted on the same ports and directory, driven with
//! the `redis` crate and a minimal HTTP client. Ports, the pinned binary and the HTTP client
//! come from the cluster tests' helpers, so both suites get the same protection against port
//! reuse and a binary relinked by a concurrent build.

#![allow(dead_code)]

#[path = "../cluster_support/mod.rs"]
mod cluster_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use cluster_support::free_port;
use cluster_support::{binary, http, kill_child, terminate_child};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `<tmp>/store-node-<tag>-<pid>-<nanos>`.
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("store-node-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small pseudo-random generator (xorshift) seeded from the clock; the seed is printed so a
/// failing run can be understood.
pub struct Random(u64);

impl Random {
    /// Seeded from the clock.
    pub fn from_clock() -> Random {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }

    /// A value in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low).max(1)
    }
}

/// One node's identity, ports and data directory; survives restarts.
pub struct Node {
    pub name: String,
    pub resp: u16,
    pub http: u16,
    pub peer: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// A node named `d-<index>` with fresh ports over `data_dir` (not started).
    pub fn new(index: usize, data_dir: &Path) -> Node {
        Node {
            name: format!("d-{index}"),
            resp: free_port(),
            http: free_port(),
            peer: free_port(),
            data_dir: data_dir.to_path_buf(),
            child: None,
            log: data_dir.with_extension(format!("{index}.log")),
        }
    }

    /// `127.0.0.1:<peer port>`.
    pub fn peer_address(&self) -> String {
        format!("127.0.0.1:{}", self.peer)
    }

    /// Starts the process with `--peers` (may be empty) and extra flags; stderr goes to a log
    /// file beside the data directory ([`Node::log`]).
    pub fn start(&mut self, peers: &[String], extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = Command::new(binary());
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--resp-port", &self.resp.to_string()])
            .args(["--http-port", &self.http.to_string()])
            .args(["--peer-port", &self.peer.to_string()])
            .args(["--node-name", &self.name])
            .args(["--shutdown-timeout", "5"])
            .args(["--log-level", "warn"])
            .args(["--log-format", "json"])
            .args(extra)
            .env_remove("POD_NAME")
            .env_remove("POD_IP")
            .env_remove("CLUSTER_SERVICE_NAME")
            .env_remove("STORE_NODE_PEERS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        if !peers.is_empty() {
            command.args(["--peers", &peers.join(",")]);
        }
        // Test defaults, unless `extra` sets them (a flag given twice is refused).
        for (flag, value) in [
            ("--first-start-wait-ms", "1500"),
            ("--anti-entropy-interval-ms", "2000"),
        ] {
            if !extra.contains(&flag) {
                command.args([flag, value]);
            }
        }
        self.child = Some(command.spawn().expect("store-node starts"));
    }

    /// Starts in disc mode over the node's data directory with `--fsync fsync`.
    pub fn start_disc(&mut self, peers: &[String], fsync: &str) {
        let dir = self.data_dir.display().to_string();
        self.start(
            peers,
            &[
                "--storage-mode",
                "disc",
                "--data-dir",
                &dir,
                "--fsync",
                fsync,
            ],
        );
    }

    /// What the process logged so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGTERM, then waits (bounded) for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self, within: Duration) -> bool {
        terminate_child(&mut self.child, within)
    }

    /// Waits (bounded) for the process to exit by itself; its exit status, `None` when it is
    /// still running (it is then killed).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// `GET path` on the HTTP port: (status, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http(self.http, "GET", path, "")
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.http_get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    }

    /// Waits until ready; panics with the last `/readyz` answer and the log after `within`.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "{} not ready within {within:?}: {:?}\n{}",
            self.name,
            self.http_get("/readyz"),
            self.log()
        );
    }

    /// A fresh synchronous Redis connection.
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.resp))
            .expect("valid url")
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connects")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
