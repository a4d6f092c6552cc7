//! Multi-process: three nodes converge to the same keys, values and TTLs; a fourth joins under
//! write load and catches up.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{eventually, nodes, same_digest, start_all, Node};
use redis::Commands;

fn value_and_ttl(node: &Node, key: &str) -> (Option<String>, i64) {
    let mut connection = node.redis();
    let value: Option<String> = connection.get(key).expect("GET");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key)
        .query(&mut connection)
        .expect("PTTL");
    (value, ttl)
}

#[test]
fn three_nodes_converge_and_a_fourth_catches_up_under_load() {
    let (mut all, peers) = nodes(4);
    let fourth = all.pop().expect("four nodes");
    let mut three = all;
    start_all(&mut three, &peers, &["--write-ack", "one"]);

    // Writes spread over the nodes: strings with and without TTLs, hashes, deletes.
    for index in 0..300 {
        let mut connection = three[index % 3].redis();
        let key = format!("k{index}");
        if index % 3 == 0 {
            let _: () = connection
                .set_ex(&key, format!("v{index}"), 600)
                .expect("SETEX");
        } else {
            let _: () = connection.set(&key, format!("v{index}")).expect("SET");
        }
        let _: () = connection
            .hset(format!("h{index}"), "f", index)
            .expect("HSET");
    }
    for index in (0..300).step_by(10) {
        let mut connection = three[(index + 1) % 3].redis();
        let _: () = connection.del(format!("k{index}")).expect("DEL");
    }
    assert!(
        eventually(Duration::from_secs(60), || same_digest(&[
            &three[0], &three[1], &three[2]
        ])),
        "digests differ"
    );
    for index in 0..300 {
        let key = format!("k{index}");
        let expected = (index % 10 != 0).then(|| format!("v{index}"));
        let (value0, ttl0) = value_and_ttl(&three[0], &key);
        assert_eq!(value0, expected, "{key} on t-0");
        for node in &three[1..] {
            let (value, ttl) = value_and_ttl(node, &key);
            assert_eq!(value, expected, "{key} on {}", node.name);
            // Same absolute expiry everywhere: PTTLs read a few ms apart.
            assert!((ttl - ttl0).abs() < 2_000, "{key}: {ttl} vs {ttl0}");
            if index % 3 == 0 && expected.is_some() {
                assert!(ttl > 590_000, "{key} TTL {ttl}");
            } else if expected.is_some() {
                assert_eq!(ttl, -1, "{key}");
            }
        }
    }

    // A fourth node joins while clients keep writing through the first three.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = three
        .iter()
        .enumerate()
        .map(|(writer, node)| {
            let mut connection = node.redis();
            let stop = stop.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load:{writer}:{index}");
                    if connection.set::<_, _, ()>(&key, index).is_ok() {
                        acked.lock().expect("lock").push((key, index));
                    }
                    index += 1;
                }
            })
        })
        .collect();
    let mut fourth = fourth;
    fourth.start(&peers, &["--write-ack", "one"]);
    fourth.wait_ready(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    let everyone = [&three[0], &three[1], &three[2], &fourth];
    assert!(
        eventually(Duration::from_secs(60), || same_digest(&everyone)),
        "digests differ after the join"
    );
    let mut connection = fourth.redis();
    for (key, value) in &acked {
        let stored: Option<i64> = connection.get(key).expect("GET");
        assert_eq!(stored, Some(*value), "{key} on the joined node");
    }
    let status = fourth.http_get("/v1/status").expect("status").1;
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["state"], "ready");
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(3));
    assert!(status["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .all(|peer| peer["connected"] == true
            && peer["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("t-"))));
}
