//! Clock skew: three ram nodes with `--write-ack all`, one of them with its clock a minute
//! ahead, then (a new cluster) a minute behind (`--test-clock-offset-ms`, which shifts every
//! use of the time on that node). With `all`, a write acknowledged to its client is on every
//! node, so the next write of the key, on any node, follows it: it must win, whatever the
//! clocks say (with `one`, the next node may not hold it yet, and the two are ordered by
//! cluster time, which the correction keeps within milliseconds of real time but not exact).
//!
//! Promises checked:
//! - the skew is measured and reported: in `/v1/status` (`peers[].clockSkewMs` on the other
//!   nodes, about the offset), and the skewed node stamps by the majority's time
//!   (`store_node_replication_clock_correction_ms`);
//! - zero acknowledged writes lost: writers on every node add fresh keys, and each of 100 keys
//!   is overwritten six times in turn on different nodes, each write issued once the previous
//!   was acknowledged: every node ends with every acknowledged add and with the last
//!   acknowledged value of every overwritten key (a skewed clock must not make a later write
//!   lose last-writer-wins);
//! - no record is refused for its stamp (`records_refused_clock_skew` stays 0).

mod fault_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fault_support::{check_every_node, metric, status, Figures, Node, TempDir, Workload};

/// Overwrites each key `rounds` times, each time on the next node, each write once the
/// previous one was acknowledged (retried on an error, as a client does); returns the last
/// acknowledged value of every key and how many writes were retried.
fn overwrite_in_turn(
    nodes: &[Node],
    keys: usize,
    rounds: usize,
) -> (BTreeMap<String, String>, usize) {
    let mut connections: Vec<redis::Connection> = nodes.iter().map(Node::redis).collect();
    let mut last = BTreeMap::new();
    let mut retries = 0;
    for key in 0..keys {
        let name = format!("register:{key}");
        for round in 0..rounds {
            let node = (key + round) % nodes.len();
            let value = format!("round {round} on {}", nodes[node].name);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let written: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&name)
                    .arg(&value)
                    .query(&mut connections[node]);
                match written {
                    Ok(()) => break,
                    Err(error) => {
                        retries += 1;
                        assert!(
                            Instant::now() < deadline,
                            "{name} never acknowledged: {error}"
                        );
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            last.insert(name.clone(), value);
        }
    }
    (last, retries)
}

fn skewed_cluster(offset_ms: i64) {
    let dirs: Vec<TempDir> = (0..3)
        .map(|index| TempDir::new(&format!("clock-{index}")))
        .collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| Node::new(index, &dir.0))
        .collect();
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    let offset = offset_ms.to_string();
    for (index, node) in nodes.iter_mut().enumerate() {
        let mut extra = vec!["--write-ack", "all"];
        if index == 0 {
            extra.extend(["--test-clock-offset-ms", offset.as_str()]);
        }
        node.start(&peers, &extra);
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(60));
    }

    // Reported: the others see d-0's clock off by the offset, d-0 stamps by theirs.
    let skew_of_d0 = |node: &Node| {
        status(node)["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|peer| peer["name"] == "d-0"))
            .and_then(|peer| peer["clockSkewMs"].as_i64())
    };
    for node in &nodes[1..] {
        let skew = skew_of_d0(node).unwrap_or_else(|| {
            panic!(
                "{} reports no clockSkewMs for d-0: {}",
                node.name,
                status(node)
            )
        });
        assert!(
            (skew - offset_ms).abs() < 2_000,
            "{} sees d-0's clock off by {skew} ms, not about {offset_ms}",
            node.name
        );
    }
    let correction = metric(&nodes[0], "store_node_replication_clock_correction_ms") as i64;
    assert!(
        (correction + offset_ms).abs() < 2_000,
        "d-0 corrects its clock by {correction} ms, not about {}",
        -offset_ms
    );
    for node in &nodes[1..] {
        assert_eq!(
            metric(node, "store_node_replication_clock_correction_ms"),
            0.0,
            "{}",
            node.name
        );
    }

    let tag = if offset_ms > 0 { "ahead" } else { "behind" };
    let started = Instant::now();
    let workload = Workload::start(tag, &nodes, 100_000);
    let (registers, retries) = overwrite_in_turn(&nodes, 100, 6);
    std::thread::sleep(Duration::from_secs(1));
    let history = workload.finish();
    let mut expected = history.acknowledged.clone();
    expected.extend(registers.clone());
    let all: Vec<&Node> = nodes.iter().collect();
    let (converged_in, lost) = check_every_node(&all, &expected, Duration::from_secs(30));
    let refused: f64 = nodes
        .iter()
        .map(|node| {
            metric(
                node,
                "store_node_replication_records_refused_clock_skew_total",
            )
        })
        .sum();
    Figures {
        scenario: &format!("d-0's clock {} by {} s", tag, offset_ms.abs() / 1000),
        history: &history,
        lost: &lost,
        converged_in,
        extra: format!(
            "{} overwrites in turn of 100 keys (each after the previous was acknowledged, {retries} retried) over {:.1} s, last values checked on every node; d-0 seen {:?} ms off, corrects by {correction} ms; records refused for their stamp {refused}",
            registers.len() * 6,
            started.elapsed().as_secs_f64(),
            skew_of_d0(&nodes[1]),
        ),
    }
    .print();
    assert_eq!(
        lost,
        vec![0; 3],
        "acknowledged writes lost with d-0's clock {tag}"
    );
    assert_eq!(
        refused, 0.0,
        "records refused although every clock is corrected"
    );
}

#[test]
fn a_node_a_minute_ahead_or_behind_loses_no_acknowledged_write() {
    skewed_cluster(60_000);
    skewed_cluster(-60_000);
}
