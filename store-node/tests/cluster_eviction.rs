//! Multi-process: evictions under memory pressure replicate. Three nodes with a small
//! `--max-memory` and `volatile-ttl`; sessions are written through one node until it evicts.
//! Every key it evicted is gone on every node, stays gone after more anti-entropy rounds (before,
//! peers kept the keys and anti-entropy brought them back), and every node's memory alarm clears.

mod cluster_support;

use std::time::Duration;

use cluster_support::{eventually, nodes, same_digest, start_all, Node};
use redis::Commands;

const KEYS: usize = 3000;

fn info_field(node: &Node, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut node.redis())
        .expect("INFO");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section} of {}: {info}", node.name))
}

/// Which of the written keys exist on `node`.
fn present(node: &Node) -> Vec<bool> {
    let mut pipeline = redis::pipe();
    for index in 0..KEYS {
        pipeline.cmd("EXISTS").arg(format!("s{index}"));
    }
    pipeline
        .query(&mut node.redis())
        .unwrap_or_else(|error| panic!("EXISTS on {}: {error}", node.name))
}

#[test]
fn evicted_keys_stay_gone_on_every_node() {
    let (mut all, peers) = nodes(3);
    // 2 MB, 1.5 MB without the reserve: about 1000 sessions of 1 KiB reach the high
    // watermark (80 %).
    start_all(
        &mut all,
        &peers,
        &[
            "--write-ack",
            "one",
            "--max-memory",
            "2000000",
            // The data estimate alone: a 2 MB limit is below a process's own footprint.
            "--memory-accounting",
            "data",
            "--eviction-policy",
            "volatile-ttl",
        ],
    );
    let mut connection = all[0].redis();
    let value = "x".repeat(1024);
    for index in 0..KEYS {
        // Later keys expire later: volatile-ttl evicts the early ones.
        let _: () = connection
            .set_ex(format!("s{index}"), &value, 3600 + index as u64)
            .unwrap_or_else(|error| panic!("SET s{index}: {error}"));
    }
    // The write that crosses the high watermark raises the alarm; the next one evicts down to
    // the low watermark (fewer than the 256 evictions one write may do), where it clears.
    let _: () = connection.set_ex("marker", "m", 60).expect("SET marker");
    let evicted = info_field(&all[0], "stats", "evicted_keys");
    assert!(evicted > 1000, "t-0 evicted only {evicted} keys");
    let everyone = [&all[0], &all[1], &all[2]];
    assert!(
        eventually(Duration::from_secs(30), || same_digest(&everyone)),
        "digests differ after the writes"
    );
    // Two more anti-entropy periods (2 s each): a key kept by a peer would come back now.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(30), || same_digest(&everyone)),
        "digests differ after anti-entropy"
    );
    let on_writer = present(&all[0]);
    let kept = on_writer.iter().filter(|present| **present).count() as u64;
    // Every node holds every key, so a peer may cross its own watermark too and evict (its
    // evictions replicate here): each missing key was evicted by some node, and none that t-0
    // evicted came back.
    let evicted_anywhere: u64 = everyone
        .iter()
        .map(|node| info_field(node, "stats", "evicted_keys"))
        .sum();
    assert!(
        kept <= KEYS as u64 - evicted,
        "evicted keys came back on t-0: {kept} kept, {evicted} evicted there"
    );
    assert!(
        KEYS as u64 - kept <= evicted_anywhere,
        "{} keys gone but only {evicted_anywhere} evicted on the three nodes",
        KEYS as u64 - kept
    );
    assert!(!on_writer[0], "s0 (nearest expiry) was not evicted");
    assert!(
        on_writer[KEYS - 1],
        "s{} (latest expiry) was evicted",
        KEYS - 1
    );
    for node in &all[1..] {
        assert_eq!(
            present(node),
            on_writer,
            "{} holds other keys than t-0",
            node.name
        );
    }
    for node in &all {
        assert!(
            eventually(Duration::from_secs(10), || info_field(
                node,
                "memory",
                "memory_alarm"
            ) == 0),
            "{} still has its memory alarm raised: used {} of {}",
            node.name,
            info_field(node, "memory", "used_memory"),
            info_field(node, "memory", "maxmemory"),
        );
    }
}
