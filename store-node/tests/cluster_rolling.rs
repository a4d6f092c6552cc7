//! Multi-process: a rolling restart of every node, one at a time, each waiting for the
//! previous one to be ready, under client load through all nodes: zero lost sessions.

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{eventually, nodes, same_digest, start_all, Node};
use redis::Commands;

#[test]
fn rolling_restart_under_load_loses_no_session() {
    let (mut all, peers) = nodes(3);
    start_all(&mut all, &peers, &["--write-ack", "one"]);
    let ports: Vec<u16> = all.iter().map(|node| node.resp).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    // One client per node; a client whose node goes away reconnects to the next one.
    let writers: Vec<_> = (0..3)
        .map(|writer| {
            let ports = ports.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut target = writer;
                let mut index = 0u64;
                let mut connection: Option<redis::Connection> = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some(current) = connection.as_mut() else {
                        target = (target + 1) % ports.len();
                        connection =
                            redis::Client::open(format!("redis://127.0.0.1:{}/", ports[target]))
                                .ok()
                                .and_then(|client| {
                                    client
                                        .get_connection_with_timeout(Duration::from_millis(300))
                                        .ok()
                                });
                        continue;
                    };
                    let key = format!("session:{writer}:{index}");
                    let result: redis::RedisResult<()> = redis::cmd("HSET")
                        .arg(&key)
                        .arg("data")
                        .arg(index)
                        .query(current);
                    match result {
                        Ok(()) => {
                            let _: redis::RedisResult<()> = current.expire(&key, 600);
                            acked.lock().expect("lock").push(key);
                            index += 1;
                        }
                        Err(_) => connection = None,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for node in all.iter_mut() {
        let node: &mut Node = node;
        assert!(
            node.terminate(Duration::from_secs(10)),
            "{} did not stop cleanly on SIGTERM",
            node.name
        );
        node.start(&peers, &["--write-ack", "one"]);
        node.wait_ready(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    let everyone = [&all[0], &all[1], &all[2]];
    assert!(
        eventually(Duration::from_secs(15), || same_digest(&everyone)),
        "digests differ after the rolling restart"
    );
    for node in &all {
        let mut connection = node.redis();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|key| !connection.exists::<_, bool>(key.as_str()).unwrap_or(false))
            .collect();
        assert!(
            lost.is_empty(),
            "{} lost {} of {} sessions, e.g. {:?}",
            node.name,
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
    }
}
