//! Multi-process: a partition injected with the test-only transport fault (`--test-faults`),
//! writes on both sides (including the same key), heal: every node converges to the same
//! digest within the anti-entropy interval and last-writer-wins picks the same value.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{eventually, nodes, same_digest, start_all, Node};
use redis::Commands;

fn block(node: &Node, peers: &[String]) {
    let body = serde_json::json!({ "blocked": peers }).to_string();
    let (status, _) = node
        .http_post("/v1/test/faults", &body)
        .expect("faults endpoint");
    assert_eq!(status, 200);
}

#[test]
fn partition_heals_to_one_state() {
    let (mut all, peers) = nodes(3);
    start_all(&mut all, &peers, &["--write-ack", "none", "--test-faults"]);
    let mut connection = all[0].redis();
    let _: () = connection.set("shared", "before").expect("SET");
    assert!(eventually(Duration::from_secs(30), || same_digest(&[
        &all[0], &all[1], &all[2]
    ])));

    // {t-0} | {t-1, t-2}
    block(&all[0], &peers[1..]);
    block(&all[1], &peers[..1]);
    block(&all[2], &peers[..1]);
    assert!(eventually(Duration::from_secs(30), || {
        let status = all[0]
            .http_get("/v1/status")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        status["peers"]
            .as_array()
            .is_some_and(|peers| peers.iter().all(|peer| peer["connected"] == false))
    }));
    for index in 0..50 {
        let _: () = all[0].redis().set(format!("a{index}"), index).expect("SET");
        let _: () = all[1].redis().set(format!("b{index}"), index).expect("SET");
    }
    let _: () = all[0].redis().set("shared", "minority").expect("SET");
    let _: () = all[0].redis().del("a0").expect("DEL");
    std::thread::sleep(Duration::from_millis(20));
    // Later in time: wins everywhere.
    let _: () = all[2].redis().set("shared", "majority").expect("SET");
    std::thread::sleep(Duration::from_millis(500));
    let minority: Option<String> = all[0].redis().get("b1").expect("GET");
    assert_eq!(minority, None, "the partition leaked");

    let healed = Instant::now();
    for node in &all {
        block(node, &[]);
    }
    // Anti-entropy interval is 2 s and reconnect backoff at most 2 s, so this takes about 4 s;
    // the bound leaves slack for a loaded CI machine.
    assert!(
        eventually(Duration::from_secs(30), || same_digest(&[
            &all[0], &all[1], &all[2]
        ])),
        "no convergence after the heal"
    );
    eprintln!("converged {:?} after the heal", healed.elapsed());
    for node in &all {
        let mut connection = node.redis();
        let shared: Option<String> = connection.get("shared").expect("GET");
        assert_eq!(shared.as_deref(), Some("majority"), "on {}", node.name);
        let a0: Option<i64> = connection.get("a0").expect("GET");
        assert_eq!(
            a0, None,
            "a delete on the minority side is lost on {}",
            node.name
        );
        for index in 1..50 {
            let a: Option<i64> = connection.get(format!("a{index}")).expect("GET");
            let b: Option<i64> = connection.get(format!("b{index}")).expect("GET");
            assert_eq!((a, b), (Some(index), Some(index)), "on {}", node.name);
        }
    }
}
