//! A slow disc: three disc nodes with `--write-ack one` and a small write-ahead log queue
//! (256 KiB); d-0's log writer is stalled (the test switch of `--test-faults`, the same hook
//! as a disc that stops answering) for 12 s while writers on d-1 and d-2 replicate to it, so
//! d-0's log queue is full and its links wait for room.
//!
//! Promises checked:
//! - other connections keep going: `PING` and a `GET` on d-0 answer within a second the whole
//!   time (only writers wait for a slow disc, and without blocking a thread);
//! - peer heartbeats keep going: no link of any node drops, although the stall lasts more
//!   than twice the peer timeout (5 s);
//! - every acknowledged write is on every node once the disc recovers.

mod fault_support;

use std::time::{Duration, Instant};

use fault_support::{check_every_node, metric, Figures, Node, TempDir, Workload};

fn faults(node: &Node, body: &str) {
    let answer = fault_support::http(node.http, "POST", "/v1/test/faults", body);
    assert_eq!(
        answer.as_ref().map(|(status, _)| *status),
        Some(200),
        "{answer:?}"
    );
}

#[test]
fn a_stalled_disc_stalls_no_other_connection_and_no_heartbeat() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|index| TempDir::new(&format!("slow-disc-{index}")))
        .collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| Node::new(index, &dir.0))
        .collect();
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    for node in nodes.iter_mut() {
        let dir = node.data_dir.display().to_string();
        node.start(
            &peers,
            &[
                "--storage-mode",
                "disc",
                "--data-dir",
                &dir,
                "--fsync",
                "everysec",
                "--write-ack",
                "one",
                "--test-faults",
                "--log-queue-limit-bytes",
                "262144",
            ],
        );
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(60));
    }
    let dropped = |nodes: &[Node]| -> f64 {
        nodes
            .iter()
            .map(|node| metric(node, "store_node_replication_links_dropped_total"))
            .sum()
    };
    let dropped_before = dropped(&nodes);
    let mut reader = nodes[0].redis();
    let _: () = redis::cmd("SET")
        .arg("probe")
        .arg("value")
        .query(&mut reader)
        .expect("SET");

    faults(&nodes[0], r#"{"disc": "stall"}"#);
    let stalled = Instant::now();
    let workload = Workload::start("slow-disc", &nodes[1..], 100_000);
    let (mut slowest, mut probes, mut queue_peak) = (Duration::ZERO, 0, 0.0f64);
    while stalled.elapsed() < Duration::from_secs(12) {
        let asked = Instant::now();
        let pong: String = redis::cmd("PING").query(&mut reader).expect("PING on d-0");
        let value: Option<String> = redis::cmd("GET")
            .arg("probe")
            .query(&mut reader)
            .expect("GET on d-0");
        slowest = slowest.max(asked.elapsed());
        probes += 1;
        assert_eq!((pong.as_str(), value.as_deref()), ("PONG", Some("value")));
        queue_peak = queue_peak.max(metric(&nodes[0], "store_node_wal_queued_bytes"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let dropped_during = dropped(&nodes) - dropped_before;
    faults(&nodes[0], r#"{"disc": "none"}"#);
    let healed = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let history = workload.finish();
    let all: Vec<&Node> = nodes.iter().collect();
    let (_, lost) = check_every_node(&all, &history.acknowledged, Duration::from_secs(60));
    Figures {
        scenario: "d-0's disc stalled for 12 s",
        history: &history,
        lost: &lost,
        converged_in: healed.elapsed(),
        extra: format!(
            "d-0's log queue peaked at {queue_peak} bytes (limit 262144); {probes} PING+GET on d-0 during the stall, slowest {:.1} ms; links dropped during the stall {dropped_during}",
            slowest.as_secs_f64() * 1000.0
        ),
    }
    .print();
    assert!(
        queue_peak >= 262_144.0,
        "d-0's log queue never filled ({queue_peak} bytes): the test stalled nothing"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a PING and GET on d-0 took {slowest:?} while its disc stalled"
    );
    assert_eq!(
        dropped_during, 0.0,
        "links dropped while d-0's disc stalled"
    );
    assert_eq!(lost, vec![0; 3], "acknowledged writes lost");
}
