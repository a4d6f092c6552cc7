//! What a client may make a node hold, measured on a real process: a client that never
//! authenticated and sends a 1M-argument or a 512 MiB request is closed at the first header
//! with Redis's error, and the node's resident memory (its peak, VmHWM) stays within a few MiB
//! of its baseline; authenticated clients are held to `client-query-buffer-limit` and to
//! `maxmemory-clients` (set with CONFIG SET), which closes the biggest client first; a client
//! running PINGs meanwhile is never refused nor stalled. The measured numbers are printed.

mod cluster_support;
mod tls_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::{eventually, Node};
use tls_support::temp_dir;

const PASSWORD: &str = "limits-secret";

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sends `header`, then streams `filler` until the node closes the connection or `limit`
/// bytes went out; returns what the node answered and how many bytes were sent.
fn flood(port: u16, header: &[u8], filler: &[u8], limit: usize) -> (Vec<u8>, usize) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sent = 0;
    if stream.write_all(header).is_ok() {
        sent += header.len();
        let chunk: Vec<u8> = filler.iter().copied().cycle().take(64 * 1024).collect();
        while sent < limit && stream.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (answer, sent)
}

/// A client that authenticates and runs PINGs until stopped, counting them in `count`;
/// returns the slowest answer.
struct Pinger {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<(u64, Duration)>,
}

impl Pinger {
    fn start(port: u16) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = pinger(port, stop.clone(), count.clone());
        let pinger = Pinger {
            stop,
            count,
            thread,
        };
        pinger.wait_for_more(5);
        pinger
    }

    /// Waits until `more` PINGs were answered after this call.
    fn wait_for_more(&self, more: u64) {
        let target = self.count.load(Ordering::Relaxed) + more;
        assert!(
            eventually(Duration::from_secs(10), || self
                .count
                .load(Ordering::Relaxed)
                >= target),
            "the other client stopped getting answers"
        );
    }

    /// Makes sure it still gets answers, stops it; how many it ran and the slowest.
    fn finish(self) -> (u64, Duration) {
        self.wait_for_more(5);
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("the other client was never refused")
    }
}

fn pinger(
    port: u16,
    stop: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
) -> std::thread::JoinHandle<(u64, Duration)> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 64];
        stream
            .write_all(format!("AUTH {PASSWORD}\r\n").as_bytes())
            .unwrap();
        let read = stream.read(&mut buffer).expect("AUTH answered");
        assert_eq!(&buffer[..read], b"+OK\r\n");
        let (mut count, mut slowest) = (0u64, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            stream.write_all(b"PING\r\n").expect("PING sent");
            let read = stream.read(&mut buffer).expect("PING answered");
            assert_eq!(&buffer[..read], b"+PONG\r\n");
            slowest = slowest.max(started.elapsed());
            count += 1;
            counter.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        (count, slowest)
    })
}

fn info_field(node: &Node, field: &str) -> u64 {
    let mut connection = node.redis();
    let info: String = redis::cmd("AUTH")
        .arg(PASSWORD)
        .query::<String>(&mut connection)
        .and_then(|_| redis::cmd("INFO").arg("everything").query(&mut connection))
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO"))
}

#[test]
fn unauthenticated_floods_are_closed_at_the_limit_and_cost_no_memory() {
    let dir = temp_dir("limits");
    std::fs::write(dir.join("password"), PASSWORD).unwrap();
    let mut node = Node::new(0);
    let password = dir.join("password").display().to_string();
    node.start(
        &[],
        &["--password-file", &password, "--reload-interval-ms", "100"],
    );
    node.wait_ready(Duration::from_secs(60));
    let pid = node.pid();
    let (started_rss, _) = memory_kib(pid);
    // Warm up: a few clients and commands, one flood of each kind, the background tasks'
    // first rounds; what is measured is what floods cost a running node.
    flood(node.resp, b"*1000000\r\n", b"$1\r\nx\r\n", 1 << 20);
    flood(node.resp, b"*1\r\n$536870912\r\n", b"x", 1 << 20);
    let bystander = Pinger::start(node.resp);
    for _ in 0..3 {
        let mut stream = TcpStream::connect(("127.0.0.1", node.resp)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"PING\r\n").unwrap();
        let mut answer = [0u8; 64];
        let read = stream.read(&mut answer).expect("answer");
        assert_eq!(&answer[..read], b"-NOAUTH Authentication required.\r\n");
    }
    let (baseline_rss, baseline_peak) = memory_kib(pid);
    println!("node RSS at start {started_rss} KiB, after warming up {baseline_rss} KiB (peak {baseline_peak} KiB)");

    let started = Instant::now();
    let (answer, sent) = flood(node.resp, b"*1000000\r\n", b"$1\r\nx\r\n", 256 << 20);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    let (rss, peak) = memory_kib(pid);
    println!(
        "1M-argument request before AUTH: closed after {sent} bytes sent in {:?}; RSS {baseline_rss} -> {rss} KiB, peak {baseline_peak} -> {peak} KiB",
        started.elapsed()
    );

    let started = Instant::now();
    let (answer, sent) = flood(node.resp, b"*1\r\n$536870912\r\n", b"x", 600 << 20);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    let (rss, peak) = memory_kib(pid);
    println!(
        "512 MiB argument before AUTH: closed after {sent} bytes sent in {:?}; RSS {baseline_rss} -> {rss} KiB, peak {baseline_peak} -> {peak} KiB",
        started.elapsed()
    );
    // Twenty clients at once, half with each flood.
    let floods: Vec<_> = (0..20)
        .map(|index| {
            let port = node.resp;
            std::thread::spawn(move || {
                let (header, filler): (&[u8], &[u8]) = if index % 2 == 0 {
                    (b"*1000000\r\n", b"$1\r\nx\r\n")
                } else {
                    (b"*1\r\n$536870912\r\n", b"x")
                };
                flood(port, header, filler, 32 << 20).0
            })
        })
        .collect();
    for flood in floods {
        let answer = flood.join().expect("flood");
        assert!(
            answer.starts_with(b"-ERR Protocol error: unauthenticated "),
            "{answer:?}"
        );
    }
    let (rss, peak) = memory_kib(pid);
    println!(
        "20 concurrent floods before AUTH: RSS {baseline_rss} -> {rss} KiB, peak {baseline_peak} -> {peak} KiB (+{} KiB)",
        peak.saturating_sub(baseline_peak)
    );
    assert!(
        peak <= baseline_peak + 4096,
        "the node's peak RSS grew from {baseline_peak} to {peak} KiB"
    );

    let (pings, slowest) = bystander.finish();
    println!("a client running PINGs meanwhile: {pings} answered, slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "slowest PING {slowest:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn authenticated_clients_are_held_to_the_query_buffer_limit_and_the_client_memory_cap() {
    let dir = temp_dir("limits-auth");
    std::fs::write(dir.join("password"), PASSWORD).unwrap();
    let mut node = Node::new(0);
    let password = dir.join("password").display().to_string();
    node.start(&[], &["--password-file", &password]);
    node.wait_ready(Duration::from_secs(60));
    let pid = node.pid();
    let mut admin = node.redis();
    let _: String = redis::cmd("AUTH").arg(PASSWORD).query(&mut admin).unwrap();
    let set = |name: &str, value: &str, connection: &mut redis::Connection| {
        let reply: String = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(connection)
            .unwrap();
        assert_eq!(reply, "OK");
    };
    let (_, baseline_peak) = memory_kib(pid);
    let bystander = Pinger::start(node.resp);
    let big_set = format!("AUTH {PASSWORD}\r\n*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$400000000\r\n");

    // A query buffer above client-query-buffer-limit: closed without a reply, as Redis does.
    set("client-query-buffer-limit", "4mb", &mut admin);
    let (answer, sent) = flood(node.resp, big_set.as_bytes(), b"x", 64 << 20);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "+OK\r\n",
        "only AUTH was answered"
    );
    assert!(eventually(Duration::from_secs(10), || info_field(
        &node,
        "client_query_buffer_limit_disconnections"
    ) == 1));
    let (_, peak) = memory_kib(pid);
    println!(
        "query buffer limit 4mb: closed after {sent} bytes; peak RSS {baseline_peak} -> {peak} KiB"
    );

    // All clients' buffers above maxmemory-clients: the biggest client is closed.
    set("client-query-buffer-limit", "1gb", &mut admin);
    set("maxmemory-clients", "8mb", &mut admin);
    let (answer, sent) = flood(node.resp, big_set.as_bytes(), b"x", 64 << 20);
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "+OK\r\n",
        "only AUTH was answered"
    );
    assert!(eventually(Duration::from_secs(10), || info_field(
        &node,
        "evicted_clients"
    ) == 1));
    let (_, peak) = memory_kib(pid);
    println!(
        "maxmemory-clients 8mb: closed after {sent} bytes; peak RSS {baseline_peak} -> {peak} KiB"
    );
    assert!(
        peak <= baseline_peak + 24 * 1024,
        "the node's peak RSS grew from {baseline_peak} to {peak} KiB"
    );
    // The client memory is given back.
    assert!(eventually(Duration::from_secs(10), || info_field(
        &node,
        "mem_clients_normal"
    ) < 1 << 20));

    let (pings, slowest) = bystander.finish();
    println!("a client running PINGs meanwhile: {pings} answered, slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "slowest PING {slowest:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
