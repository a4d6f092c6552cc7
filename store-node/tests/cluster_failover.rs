//! Multi-process: a node is SIGKILLed under write load with `--write-ack one`; every
//! acknowledged write is readable on the survivors; the killed node restarts (ram) and
//! re-syncs.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{eventually, nodes, same_digest, start_all};
use redis::Commands;

#[test]
fn acknowledged_writes_survive_a_sigkill_and_the_node_resyncs() {
    let (mut all, peers) = nodes(3);
    start_all(&mut all, &peers, &["--write-ack", "one"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    // Every writer writes through the node that will be killed, the worst case.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let mut connection = all[0].redis();
            let stop = stop.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{writer}:{index}");
                    match connection.set::<_, _, ()>(&key, index) {
                        Ok(()) => acked.lock().expect("lock").push((key, index)),
                        Err(_) => return,
                    }
                    index += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    all[0].kill();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    // `--write-ack one`: each acknowledged write was on at least one peer when the client got
    // OK, not necessarily on both survivors; anti-entropy between the survivors completes it.
    let survivors = [&all[1], &all[2]];
    assert!(
        eventually(Duration::from_secs(60), || same_digest(&survivors)),
        "the survivors did not converge within 60 s"
    );
    for survivor in &all[1..] {
        let mut connection = survivor.redis();
        let mut missing = Vec::new();
        for (key, value) in &acked {
            let stored: Option<i64> = connection.get(key).expect("GET");
            if stored != Some(*value) {
                missing.push(key.clone());
            }
        }
        assert!(
            missing.is_empty(),
            "{} lost {} of {} acknowledged writes, e.g. {:?}",
            survivor.name,
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
    // Restart in ram mode on the same ports: it bootstraps from a peer.
    all[0].start(&peers, &["--write-ack", "one"]);
    all[0].wait_ready(Duration::from_secs(60));
    let everyone = [&all[0], &all[1], &all[2]];
    assert!(
        eventually(Duration::from_secs(60), || same_digest(&everyone)),
        "the restarted node did not re-sync"
    );
    let mut connection = all[0].redis();
    for (key, value) in &acked {
        let stored: Option<i64> = connection.get(key).expect("GET");
        assert_eq!(stored, Some(*value), "{key} on the restarted node");
    }
}
