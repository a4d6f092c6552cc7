//! Multi-process: concurrent pipelined writers on the same keys on different nodes (hash
//! fields, counters, set members, sorted-set members and increments, list pushes), with the
//! default `--write-ack one`. Every acknowledged write must be present on every node once they
//! converge, and every node must hold the same state: with two nodes, with three nodes one of
//! which is partitioned and healed mid-run (`--test-faults`), and with two disc nodes one of
//! which is killed and restarted from its data directory mid-run. Each test prints its figures
//! (writes sent, acknowledged, present on every node).
//!
//! Every writer sends `MERGE_WRITES` rounds (default 600) of six writes; the collections grow
//! to twice that, and a debug build rewrites them on every write, so the default keeps the suite
//! quick. The run (3000 HSETs and INCRs per node) is
//! `MERGE_WRITES=3000 cargo test --release -p store-node --test cluster_merge -- --nocapture`.

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster_support::{eventually, nodes, same_digest, start_all, Node};
use redis::Commands;
use store_node::protocol::decode::decode;
use store_node::protocol::Frame;

/// Commands per pipelined burst.
const BURST: usize = 50;

/// Rounds of writes per writer (`MERGE_WRITES`).
fn rounds() -> usize {
    std::env::var("MERGE_WRITES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(600)
}

/// What one writer did: per command, whether it was acknowledged (a reply that is not an
/// error) and the reply.
struct Outcome {
    commands: Vec<Vec<String>>,
    replies: Vec<Option<Frame>>,
}

impl Outcome {
    fn acked(&self, index: usize) -> bool {
        matches!(&self.replies[index], Some(reply) if !reply.is_error())
    }
}

/// Sends `commands` to the node at `port` in pipelined bursts; a burst whose connection fails
/// is unacknowledged, and the writer reconnects (retrying for `reconnect_within`) for the next.
fn write_all(port: u16, commands: Vec<Vec<String>>, reconnect_within: Duration) -> Outcome {
    let mut replies = vec![None; commands.len()];
    let mut stream: Option<TcpStream> = None;
    for (burst, chunk) in commands.chunks(BURST).enumerate() {
        let deadline = Instant::now() + reconnect_within;
        while stream.is_none() && Instant::now() < deadline {
            stream = TcpStream::connect(("127.0.0.1", port)).ok();
            if stream.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let Some(connection) = stream.as_mut() else {
            continue;
        };
        let _ = connection.set_read_timeout(Some(Duration::from_secs(20)));
        let mut out = Vec::new();
        for command in chunk {
            out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
            for arg in command {
                out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
            }
        }
        if connection.write_all(&out).is_err() {
            stream = None;
            continue;
        }
        let mut buffer = Vec::new();
        let mut got = 0;
        while got < chunk.len() {
            match decode(&buffer) {
                Ok(Some((frame, used))) => {
                    buffer.drain(..used);
                    replies[burst * BURST + got] = Some(frame);
                    got += 1;
                    continue;
                }
                Ok(None) => {}
                Err(_) => break,
            }
            let mut bytes = [0u8; 65536];
            match connection.read(&mut bytes) {
                Ok(read) if read > 0 => buffer.extend_from_slice(&bytes[..read]),
                _ => break,
            }
        }
        if got < chunk.len() {
            stream = None;
        }
    }
    Outcome { commands, replies }
}

/// The writes of one writer, tagged `tag` (`a` on one node, `b` on another).
fn workload(tag: &str, count: usize) -> Vec<Vec<String>> {
    let mut commands = Vec::with_capacity(count * 6);
    for index in 0..count {
        let member = format!("{tag}{index}");
        for command in [
            vec!["HSET", "h", &member, "1"],
            vec!["INCR", "counter"],
            vec!["SADD", "set", &member],
            vec!["ZADD", "zset", &index.to_string(), &member],
            vec!["ZINCRBY", "scores", "1", "shared"],
            vec!["RPUSH", "list", &member],
        ] {
            commands.push(command.into_iter().map(str::to_string).collect());
        }
    }
    commands
}

/// One node's view of the keys the workload writes.
#[derive(Debug, PartialEq)]
struct View {
    hash: BTreeSet<String>,
    counter: i64,
    set: BTreeSet<String>,
    zset: BTreeMap<String, f64>,
    scores: f64,
    list: Vec<String>,
}

fn view(node: &Node) -> View {
    let mut connection = node.redis();
    let hash: BTreeMap<String, String> = connection.hgetall("h").expect("HGETALL");
    let counter: Option<i64> = connection.get("counter").expect("GET");
    let set: BTreeSet<String> = connection.smembers("set").expect("SMEMBERS");
    let zset: Vec<(String, f64)> = connection.zrange_withscores("zset", 0, -1).expect("ZRANGE");
    let scores: Option<f64> = connection.zscore("scores", "shared").expect("ZSCORE");
    let list: Vec<String> = connection.lrange("list", 0, -1).expect("LRANGE");
    View {
        hash: hash.into_keys().collect(),
        counter: counter.unwrap_or(0),
        set,
        zset: zset.into_iter().collect(),
        scores: scores.unwrap_or(0.0),
        list,
    }
}

/// Checks that every acknowledged write is present in `view` and prints the figures.
fn check(label: &str, view: &View, outcomes: &[Outcome]) {
    let (mut sent, mut acked, mut present) = (0, 0, 0);
    let (mut increments_acked, mut increments_sent) = (0i64, 0i64);
    let (mut score_acked, mut score_sent) = (0f64, 0f64);
    for outcome in outcomes {
        for (index, command) in outcome.commands.iter().enumerate() {
            sent += 1;
            let was_acked = outcome.acked(index);
            acked += usize::from(was_acked);
            let member = command.get(2).cloned().unwrap_or_default();
            let here = match command[0].as_str() {
                "HSET" => view.hash.contains(&member),
                "SADD" => view.set.contains(&member),
                "ZADD" => view.zset.contains_key(&command[3]),
                "RPUSH" => view.list.iter().filter(|value| **value == member).count() == 1,
                "INCR" => {
                    increments_sent += 1;
                    increments_acked += i64::from(was_acked);
                    true
                }
                _ => {
                    score_sent += 1.0;
                    score_acked += f64::from(u8::from(was_acked));
                    true
                }
            };
            present += usize::from(here);
            assert!(
                here || !was_acked,
                "{label}: acknowledged `{}` is missing",
                command.join(" ")
            );
        }
    }
    assert!(
        (increments_acked..=increments_sent).contains(&view.counter),
        "{label}: counter {} outside acknowledged {increments_acked} ..= sent {increments_sent}",
        view.counter
    );
    assert!(
        view.scores >= score_acked && view.scores <= score_sent,
        "{label}: ZINCRBY sum {} outside acknowledged {score_acked} ..= sent {score_sent}",
        view.scores
    );
    eprintln!(
        "{label}: writes sent {sent}, acknowledged {acked}, present on every node {present} \
         (INCR: {} counted of {increments_acked} acknowledged, {increments_sent} sent; \
         ZINCRBY: {} counted of {score_acked} acknowledged)",
        view.counter, view.scores
    );
}

/// Waits until every node reports the same digest, then checks they all show the same keys.
fn converged(label: &str, all: &[&Node], outcomes: &[Outcome]) {
    assert!(
        eventually(Duration::from_secs(60), || same_digest(all)),
        "{label}: the nodes did not converge"
    );
    let views: Vec<View> = all.iter().map(|node| view(node)).collect();
    for (node, other) in all.iter().zip(&views).skip(1) {
        assert_eq!(
            *other, views[0],
            "{label}: {} differs from {}",
            node.name, all[0].name
        );
    }
    check(label, &views[0], outcomes);
}

/// `HLEN h` on `node` (0 while it cannot answer): how far the writers have got.
fn fields(node: &Node) -> usize {
    node.try_redis()
        .and_then(|mut connection| connection.hlen("h").ok())
        .unwrap_or(0)
}

fn block(node: &Node, peers: &[String]) {
    let body = serde_json::json!({ "blocked": peers }).to_string();
    let (status, _) = node
        .http_post("/v1/test/faults", &body)
        .expect("faults endpoint");
    assert_eq!(status, 200);
}

#[test]
fn two_nodes_concurrent_writers_lose_no_acknowledged_write() {
    let (mut all, peers) = nodes(2);
    start_all(&mut all, &peers, &[]);
    let (first, second) = (all[0].resp, all[1].resp);
    let one = std::thread::spawn(move || {
        write_all(first, workload("a", rounds()), Duration::from_secs(5))
    });
    let two = std::thread::spawn(move || {
        write_all(second, workload("b", rounds()), Duration::from_secs(5))
    });
    let outcomes = [
        one.join().expect("writer on node 0"),
        two.join().expect("writer on node 1"),
    ];
    converged("two nodes", &[&all[0], &all[1]], &outcomes);
}

#[test]
fn three_nodes_with_one_partitioned_and_healed_lose_no_acknowledged_write() {
    let (mut all, peers) = nodes(3);
    start_all(&mut all, &peers, &["--test-faults"]);
    let (first, second) = (all[0].resp, all[1].resp);
    let one = std::thread::spawn(move || {
        write_all(first, workload("a", rounds()), Duration::from_secs(5))
    });
    let two = std::thread::spawn(move || {
        write_all(second, workload("b", rounds()), Duration::from_secs(5))
    });
    // {t-0} | {t-1, t-2} while the writers run, then heal.
    assert!(
        eventually(Duration::from_secs(30), || fields(&all[0]) > 0),
        "the writer on node 0 did not start"
    );
    block(&all[0], &peers[1..]);
    block(&all[1], &peers[..1]);
    block(&all[2], &peers[..1]);
    let before = fields(&all[0]);
    let written_while_partitioned =
        eventually(Duration::from_secs(30), || fields(&all[0]) >= before + 50);
    for node in &all {
        block(node, &[]);
    }
    assert!(
        written_while_partitioned,
        "node 0 took no writes while it was partitioned"
    );
    let outcomes = [
        one.join().expect("writer on node 0"),
        two.join().expect("writer on node 1"),
    ];
    converged(
        "three nodes, one partitioned and healed",
        &[&all[0], &all[1], &all[2]],
        &outcomes,
    );
}

#[test]
fn a_disc_node_killed_and_restarted_mid_run_loses_no_acknowledged_write() {
    let (mut all, peers) = nodes(2);
    let dirs: Vec<std::path::PathBuf> = (0..2)
        .map(|index| {
            let dir = std::env::temp_dir()
                .join(format!("store-node-merge-{}-{index}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("data dir");
            dir
        })
        .collect();
    let disc = |index: usize| {
        vec![
            "--storage-mode".to_string(),
            "disc".to_string(),
            "--fsync".to_string(),
            "always".to_string(),
            "--data-dir".to_string(),
            dirs[index].display().to_string(),
        ]
    };
    for (index, node) in all.iter_mut().enumerate() {
        let extra = disc(index);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        node.start(&peers, &extra);
    }
    for node in &all {
        node.wait_ready(Duration::from_secs(60));
    }
    let (first, second) = (all[0].resp, all[1].resp);
    let one = std::thread::spawn(move || {
        write_all(first, workload("a", rounds()), Duration::from_secs(5))
    });
    let two = std::thread::spawn(move || {
        write_all(second, workload("b", rounds()), Duration::from_secs(30))
    });
    assert!(
        eventually(Duration::from_secs(30), || fields(&all[1]) > 0),
        "the writer on node 1 did not start"
    );
    all[1].kill();
    let extra = disc(1);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    all[1].start(&peers, &extra);
    all[1].wait_ready(Duration::from_secs(60));
    let outcomes = [
        one.join().expect("writer on node 0"),
        two.join().expect("writer on node 1"),
    ];
    converged(
        "two disc nodes, one killed and restarted",
        &[&all[0], &all[1]],
        &outcomes,
    );
    drop(all);
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}
