//! Multi-process: a rolling restart of every node, one at a time, each waiting for the
//! previous one to be ready, under client load through all nodes with `--write-ack one`: zero
//! lost sessions (every acknowledged session is on every node), and every session write is
//! acknowledged within [`ACKNOWLEDGED_WITHIN`], retried as a client does.
//!
//! `NOREPLICAS` is not a failure here. With the default `--write-ack-timeout-ms` (1 s) it also
//! means "no peer acknowledged within 1 s", which a loaded 2-core CI machine (load 8 and more,
//! three debug-build nodes and the writers) can cause with every peer up. The write stays applied
//! and replicates (docs/replication.md, Write-ack guarantees), and a client retries it, so the
//! writers retry it on the same node and count it; the count is printed. What would make it a
//! bug, a restarted node that peers cannot count yet while the next one stops, is pinned
//! deterministically in process by `replication_restarted_node_acks_writes_as_soon_as_it_is_ready`
//! (tests/replication_cluster.rs); here it would show as a write refused for
//! [`ACKNOWLEDGED_WITHIN`].
//!
//! Every wait is generous but bounded (see `cluster_support`).

mod cluster_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{eventually, nodes, same_digest, start_all, Node};

/// Bound on one write of the load (the node answers within `--write-ack-timeout-ms`, 1 s, when
/// it is not starved of CPU).
const WRITE_WITHIN: Duration = Duration::from_secs(10);

/// Bound on getting one session write acknowledged, retries and reconnections included: far
/// more than a loaded machine needs while a node restarts, far less than a node left without
/// any peer able to acknowledge for the rest of the restart.
const ACKNOWLEDGED_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn rolling_restart_under_load_loses_no_session() {
    let (mut all, peers) = nodes(3);
    start_all(&mut all, &peers, &["--write-ack", "one"]);
    let ports: Vec<u16> = all.iter().map(|node| node.resp).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let late = Arc::new(Mutex::new(Vec::new()));
    // One client per node; a client whose node goes away reconnects to the next one.
    let writers: Vec<_> = (0..3)
        .map(|writer| {
            let ports = ports.clone();
            let stop = stop.clone();
            let acked = acked.clone();
            let refused = refused.clone();
            let late = late.clone();
            std::thread::spawn(move || {
                let mut target = writer;
                let mut index = 0u64;
                let mut connection: Option<redis::Connection> = None;
                // When the current session's first attempt was made.
                let mut first_attempt = Instant::now();
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
                                })
                                // Without a read timeout a stuck node would hang the writer
                                // and the test; a timed-out write is simply not counted.
                                .filter(|connection| {
                                    connection.set_read_timeout(Some(WRITE_WITHIN)).is_ok()
                                        && connection.set_write_timeout(Some(WRITE_WITHIN)).is_ok()
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
                            let _: redis::RedisResult<()> =
                                redis::cmd("EXPIRE").arg(&key).arg(600).query(current);
                            let took = first_attempt.elapsed();
                            if took > ACKNOWLEDGED_WITHIN {
                                late.lock()
                                    .expect("lock")
                                    .push(format!("{key}: acknowledged after {took:?}"));
                            }
                            acked.lock().expect("lock").push(key);
                            index += 1;
                            first_attempt = Instant::now();
                        }
                        // Applied on this node, not yet known to be held by a peer: retry
                        // here, as a client does (the node is up; the next node may not be).
                        Err(error) if error.to_string().contains("NOREPLICAS") => {
                            *refused.lock().expect("lock") += 1;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        // The node is going away (or stuck): the same session on the next one.
                        Err(_) => connection = None,
                    }
                }
                let waited = first_attempt.elapsed();
                if waited > ACKNOWLEDGED_WITHIN {
                    late.lock().expect("lock").push(format!(
                        "session:{writer}:{index}: not acknowledged after {waited:?}"
                    ));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for node in all.iter_mut() {
        let node: &mut Node = node;
        assert!(
            // `--shutdown-timeout 5` bounds the drain; the rest is a loaded machine's slack.
            node.terminate(Duration::from_secs(20)),
            "{} did not stop cleanly on SIGTERM",
            node.name
        );
        node.start(&peers, &["--write-ack", "one"]);
        node.wait_ready(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 100, "too little load: {}", acked.len());
    eprintln!(
        "{} sessions acknowledged, {} NOREPLICAS answers retried",
        acked.len(),
        *refused.lock().expect("lock")
    );
    let late = late.lock().expect("lock").clone();
    assert!(
        late.is_empty(),
        "{} session write(s) not acknowledged within {ACKNOWLEDGED_WITHIN:?}, e.g. {:?}",
        late.len(),
        &late[..late.len().min(3)]
    );
    let everyone = [&all[0], &all[1], &all[2]];
    assert!(
        eventually(Duration::from_secs(60), || same_digest(&everyone)),
        "digests differ after the rolling restart"
    );
    for node in &all {
        let mut connection = node.redis();
        // Pipelined in chunks: one round trip per 500 keys instead of one per key. A failed
        // EXISTS is an error, never counted as a lost session (nor as a present one).
        let mut lost: Vec<&String> = Vec::new();
        for chunk in acked.chunks(500) {
            let mut pipeline = redis::pipe();
            for key in chunk {
                pipeline.cmd("EXISTS").arg(key);
            }
            let present: Vec<bool> = pipeline
                .query(&mut connection)
                .unwrap_or_else(|error| panic!("EXISTS on {}: {error}", node.name));
            lost.extend(
                chunk
                    .iter()
                    .zip(present)
                    .filter(|(_, present)| !present)
                    .map(|(key, _)| key),
            );
        }
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
