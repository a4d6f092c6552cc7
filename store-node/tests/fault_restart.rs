//! A whole disc cluster restarted at once, one node behind: three disc nodes with
//! `--write-ack one` take writes; d-2 stops; d-0 and d-1 take more writes (d-2 misses them);
//! d-0 and d-1 stop; all three start together, as a StatefulSet starts every pod in parallel
//! after an outage.
//!
//! Promises checked:
//! - every acknowledged write is on every node within 5 s of the last node becoming ready (the
//!   nodes reconcile with each other as soon as their links are up, before they report ready;
//!   the periodic anti-entropy round is at its production period, 30 s, so it cannot help);
//! - a node that is not ready serves no stale data: reads of a key d-2 missed, sent to d-2 the
//!   whole time it starts, get `LOADING` or the acknowledged value, never nil.

mod fault_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::{check_every_node, Figures, History, Node, TempDir, Workload};

/// Writes on `nodes` for `duration`; what they acknowledged.
fn write_for(tag: &str, nodes: &[Node], duration: Duration) -> History {
    let workload = Workload::start(tag, nodes, 100_000);
    std::thread::sleep(duration);
    workload.finish()
}

/// What `GET key` on `port` answered, as the prober counts it.
#[derive(Debug, Default)]
struct Probes {
    loading: usize,
    right: usize,
    stale: usize,
    unreachable: usize,
}

fn probe(port: u16, key: &str, expected: &str, stop: &AtomicBool) -> Probes {
    let mut probes = Probes::default();
    let mut connection = None;
    while !stop.load(Ordering::Relaxed) {
        if connection.is_none() {
            connection = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .ok()
                .and_then(|client| {
                    client
                        .get_connection_with_timeout(Duration::from_millis(500))
                        .ok()
                });
        }
        match connection.as_mut() {
            None => probes.unreachable += 1,
            Some(open) => {
                let answer: redis::RedisResult<Option<String>> =
                    redis::cmd("GET").arg(key).query(open);
                match answer {
                    Ok(Some(value)) if value == expected => probes.right += 1,
                    Ok(_) => probes.stale += 1,
                    Err(error) if error.code() == Some("LOADING") => probes.loading += 1,
                    Err(_) => {
                        probes.unreachable += 1;
                        connection = None;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    probes
}

#[test]
fn a_whole_disc_cluster_restarted_with_one_node_behind_resyncs_at_once() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|index| TempDir::new(&format!("restart-{index}")))
        .collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| Node::new(index, &dir.0))
        .collect();
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    let start = |node: &mut Node| {
        let dir = node.data_dir.display().to_string();
        node.start(
            &peers,
            &[
                "--storage-mode",
                "disc",
                "--data-dir",
                &dir,
                "--fsync",
                "always",
                "--write-ack",
                "one",
                // The production period: the resync must not wait for it.
                "--anti-entropy-interval-ms",
                "30000",
            ],
        );
    };
    for node in nodes.iter_mut() {
        start(node);
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(60));
    }

    let before = write_for("before", &nodes, Duration::from_secs(2));
    assert!(
        nodes[2].terminate(Duration::from_secs(15)),
        "d-2 stops cleanly"
    );
    let behind = write_for("behind", &nodes[..2], Duration::from_secs(2));
    let (missed_key, missed_value) = behind
        .acknowledged
        .iter()
        .next()
        .map(|(key, value)| (key.clone(), value.clone()))
        .expect("writes acknowledged while d-2 was down");
    for node in nodes[..2].iter_mut() {
        assert!(
            node.terminate(Duration::from_secs(15)),
            "{} stops cleanly",
            node.name
        );
    }

    let started = Instant::now();
    for node in nodes.iter_mut() {
        start(node);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (port, stop) = (nodes[2].resp, stop.clone());
        std::thread::spawn(move || probe(port, &missed_key, &missed_value, &stop))
    };
    let mut ready_at = [None; 3];
    while ready_at.iter().any(Option::is_none) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not every node ready: {ready_at:?}"
        );
        for (index, node) in nodes.iter().enumerate() {
            if ready_at[index].is_none() && node.is_ready() {
                ready_at[index] = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let last_ready = ready_at.iter().flatten().max().copied().unwrap_or_default();
    let mut expected: BTreeMap<String, String> = before.acknowledged.clone();
    expected.extend(behind.acknowledged.clone());
    let all: Vec<&Node> = nodes.iter().collect();
    let (_, lost) = check_every_node(&all, &expected, Duration::from_secs(30));
    // From the last node ready until the check passed (an upper bound).
    let after_last_ready = started.elapsed().saturating_sub(last_ready);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let probes = prober.join().expect("prober");
    let history = History {
        acknowledged: expected.clone(),
        errors: before.errors + behind.errors,
        error_kinds: BTreeMap::new(),
    };
    Figures {
        scenario: "whole disc cluster restarted, d-2 behind",
        history: &history,
        lost: &lost,
        converged_in: after_last_ready,
        extra: format!(
            "{} writes d-2 missed; nodes ready {:?} after the start (last {:.2} s); every acknowledged write on every node {:.2} s after the last was ready; reads of a missed key on d-2 while it started: {} LOADING, {} right, {} stale, {} unreachable",
            behind.acknowledged.len(),
            ready_at.iter().flatten().map(|at| format!("{:.2} s", at.as_secs_f64())).collect::<Vec<_>>(),
            last_ready.as_secs_f64(),
            after_last_ready.as_secs_f64(),
            probes.loading,
            probes.right,
            probes.stale,
            probes.unreachable,
        ),
    }
    .print();
    assert_eq!(
        lost,
        vec![0; 3],
        "acknowledged writes missing after the restart"
    );
    assert!(
        after_last_ready <= Duration::from_secs(5),
        "every acknowledged write on every node only {after_last_ready:?} after the last node was ready"
    );
    assert_eq!(
        probes.stale, 0,
        "d-2 served stale data while it started: {probes:?}"
    );
    assert!(
        probes.right > 0,
        "d-2 never served the missed key: {probes:?}"
    );
}
