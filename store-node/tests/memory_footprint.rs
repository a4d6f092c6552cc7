//! Multi-process: the memory limit holds against the process's real footprint. Nodes run as
//! separate processes with `--max-memory 64 MiB` (no cgroup limit here, so the footprint is
//! the process's anonymous resident memory); they are filled with 1 KiB and 32 KiB values, one
//! write at a time and pipelined, and must answer Redis's exact `OOM` error before their
//! resident memory reaches the limit. A value too large to fit is refused before its bytes are
//! buffered. With three nodes, a peer's alarm travels in the replication heartbeat and makes
//! the writer refuse while the writer itself is still below its watermark.
//!
//! Each fill prints `MEMORY-FILL` lines: the figures at the refusal (docs/memory.md).

mod cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster_support::{eventually, nodes, start_all, Node};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 64 * MIB;
const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";

/// `(resident, anonymous resident)` bytes of a process.
fn resident(pid: u32) -> (u64, u64) {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: Vec<u64> = statm
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    match pages.as_slice() {
        [_, resident, shared, ..] => (resident * 4096, (resident - shared) * 4096),
        _ => (0, 0),
    }
}

/// A raw RESP connection that reads simple replies line by line.
struct Raw {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Raw {
    fn connect(node: &Node) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", node.resp)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    /// Reads one reply line (with its CRLF); bulk replies are read whole.
    fn reply(&mut self) -> String {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..end + 2).collect();
                if line[0] == b'$' {
                    let len: i64 = std::str::from_utf8(&line[1..end])
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .expect("bulk length");
                    if len >= 0 {
                        while self.pending.len() < len as usize + 2 {
                            self.read_more();
                        }
                        let body: Vec<u8> = self.pending.drain(..len as usize + 2).collect();
                        return String::from_utf8_lossy(&[line, body].concat()).into_owned();
                    }
                }
                return String::from_utf8_lossy(&line).into_owned();
            }
            self.read_more();
        }
    }

    fn read_more(&mut self) {
        let mut chunk = [0u8; 65536];
        let read = self.stream.read(&mut chunk).expect("read a reply");
        assert!(read > 0, "the node closed the connection");
        self.pending.extend_from_slice(&chunk[..read]);
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// INFO memory as `field -> value`.
    fn info_memory(&mut self) -> std::collections::HashMap<String, String> {
        self.send(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n");
        self.reply()
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }
}

fn set_command(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "*5\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n$2\r\nEX\r\n$4\r\n3600\r\n");
    out
}

/// The figures of one fill at its first refusal.
struct Fill {
    accepted: usize,
    used: u64,
    data: u64,
    /// The high watermark.
    high: u64,
    peak_rss: u64,
    rss_at_refusal: u64,
    anon_at_refusal: u64,
}

/// Fills through `writer` with `value_bytes` values, `pipeline` requests per round trip,
/// until the first refusal, which must be the exact OOM error; every process in `watched`
/// must stay below its limit all along (checked after every round trip).
fn fill(writer: &Node, watched: &[(&Node, u64)], value_bytes: usize, pipeline: usize) -> Fill {
    let mut raw = Raw::connect(writer);
    let value = vec![b'v'; value_bytes];
    let max_keys = (4 * LIMIT as usize) / value_bytes;
    let pids: Vec<u32> = watched.iter().map(|(node, _)| node.pid()).collect();
    let mut accepted = 0;
    let mut peak_rss = 0;
    let started = Instant::now();
    loop {
        assert!(
            accepted < max_keys,
            "{accepted} values of {value_bytes} bytes accepted on a 64 MiB node: no refusal"
        );
        let batch: Vec<u8> = (0..pipeline)
            .flat_map(|index| set_command(&format!("fill:{}", accepted + index), &value))
            .collect();
        raw.send(&batch);
        let mut refusal = None;
        for _ in 0..pipeline {
            let reply = raw.reply();
            if reply == "+OK\r\n" && refusal.is_none() {
                accepted += 1;
            } else if refusal.is_none() {
                refusal = Some(reply);
            }
        }
        for ((node, limit), pid) in watched.iter().zip(&pids) {
            let (rss, _) = resident(*pid);
            peak_rss = peak_rss.max(rss);
            assert!(
                rss < *limit,
                "{}: resident {rss} reached the {limit} limit after {accepted} values of {value_bytes} bytes (pipeline {pipeline}) without a refusal",
                node.name
            );
        }
        if let Some(reply) = refusal {
            assert_eq!(reply, OOM, "the refusal after {accepted} accepted values");
            break;
        }
    }
    let info = raw.info_memory();
    let field = |name: &str| -> u64 {
        info.get(name)
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO memory has no {name}: {info:?}"))
    };
    let (rss_at_refusal, anon_at_refusal) = resident(writer.pid());
    let fill = Fill {
        accepted,
        used: field("used_memory"),
        data: field("used_memory_dataset"),
        high: field("memory_high_watermark"),
        peak_rss,
        rss_at_refusal,
        anon_at_refusal,
    };
    assert!(
        field("memory_alarm") + field("memory_peer_alarm") > 0,
        "refused without an alarm: {info:?}"
    );
    println!(
        "MEMORY-FILL limit=64MiB value={value_bytes} pipeline={pipeline} accepted={} used_memory={} dataset={} high={} writer_anon={} writer_rss={} peak_rss_all={} ({:.1}s)",
        fill.accepted,
        fill.used,
        fill.data,
        fill.high,
        fill.anon_at_refusal,
        fill.rss_at_refusal,
        fill.peak_rss,
        started.elapsed().as_secs_f64()
    );
    fill
}

fn single_node() -> Node {
    let (mut all, peers) = nodes(1);
    start_all(&mut all, &peers[..0], &["--max-memory", &LIMIT.to_string()]);
    all.pop().expect("one node")
}

fn fills_and_refuses(value_bytes: usize, pipeline: usize) {
    let node = single_node();
    let fill = fill(&node, &[(&node, LIMIT)], value_bytes, pipeline);
    // The figure the watermark compared is the real footprint (here the anonymous resident
    // memory): within a few MiB of it, far above the data estimate.
    assert!(
        fill.used + 4 * MIB >= fill.anon_at_refusal,
        "used_memory {} far below the anonymous resident {}",
        fill.used,
        fill.anon_at_refusal
    );
    assert!(
        fill.used > fill.data + 4 * MIB,
        "used_memory {} is the data estimate {}, not the footprint",
        fill.used,
        fill.data
    );
    assert!(fill.accepted > 100, "only {} accepted", fill.accepted);
    // Reads and deletes still work; deleting everything clears the alarm.
    let mut connection = node.redis();
    let read: Option<Vec<u8>> = redis::cmd("GET")
        .arg("fill:0")
        .query(&mut connection)
        .expect("GET");
    assert_eq!(read.map(|value| value.len()), Some(value_bytes));
    let keys: Vec<String> = (0..fill.accepted).map(|i| format!("fill:{i}")).collect();
    for chunk in keys.chunks(500) {
        let _: u64 = redis::cmd("DEL")
            .arg(chunk)
            .query(&mut connection)
            .expect("DEL");
    }
    let mut raw = Raw::connect(&node);
    assert!(
        eventually(Duration::from_secs(10), || raw.info_memory()
            ["memory_alarm"]
            == "0"),
        "the alarm did not clear after deleting every key: {:?}",
        raw.info_memory()
    );
    raw.send(&set_command("after", b"ok"));
    assert_eq!(raw.reply(), "+OK\r\n");
}

#[test]
fn one_kib_values_one_at_a_time_are_refused_before_the_limit() {
    fills_and_refuses(1024, 1);
}

#[test]
fn one_kib_values_pipelined_are_refused_before_the_limit() {
    fills_and_refuses(1024, 64);
}

#[test]
fn thirty_two_kib_values_one_at_a_time_are_refused_before_the_limit() {
    fills_and_refuses(32 * 1024, 1);
}

#[test]
fn thirty_two_kib_values_pipelined_are_refused_before_the_limit() {
    fills_and_refuses(32 * 1024, 64);
}

/// A 10 MiB value cannot fit a 64 MiB node (it is held several times while it is written and
/// replicated): refused with the OOM error as soon as its header arrives, its bytes dropped as
/// they come, so the resident memory does not grow by its size; the connection goes on.
#[test]
fn a_value_too_large_for_the_limit_is_refused_without_buffering_it() {
    let node = single_node();
    let mut raw = Raw::connect(&node);
    raw.send(b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(raw.reply(), "+PONG\r\n");
    let before = resident(node.pid());
    let value = vec![b'x'; 10 * MIB as usize];
    let command = set_command("huge", &value);
    let mut peak = before;
    let mut observe = || {
        let now = resident(node.pid());
        peak = (peak.0.max(now.0), peak.1.max(now.1));
    };
    for piece in command.chunks(256 * 1024) {
        raw.send(piece);
        observe();
    }
    assert_eq!(raw.reply(), OOM);
    observe();
    // The resident memory (file pages included: code run for the first time pages in) grows
    // by far less than the value; the anonymous part, where the value would be, barely moves.
    assert!(
        peak.0 < before.0 + 8 * MIB,
        "resident memory grew from {} to {} for a refused 10 MiB value",
        before.0,
        peak.0
    );
    assert!(
        peak.1 < before.1 + 2 * MIB,
        "anonymous memory grew from {} to {} for a refused 10 MiB value",
        before.1,
        peak.1
    );
    raw.send(b"*2\r\n$3\r\nGET\r\n$4\r\nhuge\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(raw.reply(), "$-1\r\n");
    assert_eq!(raw.reply(), "+PONG\r\n");
    // Pipelined behind a small write and ahead of another: answered in order.
    let mut pipeline = set_command("small", b"1");
    pipeline.extend_from_slice(&command);
    pipeline.extend_from_slice(&set_command("small2", b"2"));
    raw.send(&pipeline);
    assert_eq!(raw.reply(), "+OK\r\n");
    assert_eq!(raw.reply(), OOM);
    assert_eq!(raw.reply(), "+OK\r\n");
    // A value that fits is accepted.
    raw.send(&set_command("fits", &vec![b'y'; MIB as usize]));
    assert_eq!(raw.reply(), "+OK\r\n");
}

/// Three nodes, all written through `t-0`; `t-2` has a smaller limit, so it reaches its
/// watermark first. Its alarm travels in the heartbeat: `t-0` refuses with the OOM error while
/// it is itself below its high watermark, and no node's resident memory reaches its limit.
#[test]
fn a_peer_in_alarm_makes_the_writer_refuse() {
    let (mut all, peers) = nodes(3);
    let limit = LIMIT.to_string();
    let smaller = (48 * MIB).to_string();
    for (index, node) in all.iter_mut().enumerate() {
        let limit = if index == 2 { &smaller } else { &limit };
        node.start(&peers, &["--max-memory", limit, "--write-ack", "one"]);
    }
    for node in &all {
        node.wait_ready(Duration::from_secs(60));
    }
    let watched = [(&all[0], LIMIT), (&all[1], LIMIT), (&all[2], 48 * MIB)];
    let fill = fill(&all[0], &watched, 32 * 1024, 16);
    let status = |node: &Node| -> serde_json::Value {
        let (_, body) = node.http_get("/v1/status").expect("status");
        serde_json::from_str(&body).expect("status JSON")
    };
    let writer = status(&all[0]);
    let peer = status(&all[2]);
    assert_eq!(peer["memory"]["alarm"], true, "t-2: {peer}");
    assert_eq!(
        writer["memory"]["peersInAlarm"],
        serde_json::json!(["t-2"]),
        "{writer}"
    );
    assert!(
        fill.used < fill.high,
        "t-0 refused at its own watermark ({} of {}), not for its peer",
        fill.used,
        fill.high
    );
}
