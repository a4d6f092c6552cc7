//! Multi-process: a full `volatile-lru` cluster evicts instead of refusing. Three nodes with
//! `--max-memory 64 MiB` (the footprint is each process's anonymous resident memory, as in a
//! pod it is the cgroup's) are filled through all three by 8 clients with 1 KiB sessions,
//! `SET ... EX 3600`, to three times the limit. No write is refused (`OK`, or `NOREPLICAS` on a
//! loaded machine, never `OOM`), the nodes evict, keep a working set of keys, and stay under
//! the limit.
//!
//! Every eviction leaves a tombstone that replicates; kept for the one-hour grace they filled
//! each node (262,150 tombstones and 8 keys after two fills) until nothing was left to evict
//! and writes were refused. Under memory pressure tombstones go once every member holds them
//! (docs/memory.md). Evictions on one node grow every other node's footprint (tombstones,
//! replicated deletes), and without a data floor the nodes' targets chased that growth until
//! about 700 keys were left and writes were refused.

mod cluster_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{nodes, start_all, Node};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 64 * MIB;
const VALUE_BYTES: usize = 1024;
const CLIENTS: usize = 8;
/// Requests per round trip: fast enough for a debug build on a loaded machine.
const PIPELINE: usize = 16;

fn info_field(node: &Node, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut node.redis())
        .unwrap_or_else(|error| panic!("INFO {section} on {}: {error}", node.name));
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section} of {}: {info}", node.name))
}

/// The anonymous resident bytes of `pid` (the footprint outside a cgroup).
fn anonymous_resident(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: Vec<u64> = statm
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    match pages.as_slice() {
        [_, resident, shared, ..] => resident.saturating_sub(*shared) * 4096,
        _ => 0,
    }
}

#[test]
fn a_full_volatile_lru_cluster_evicts_and_never_refuses() {
    let (mut all, peers) = nodes(3);
    let limit = LIMIT.to_string();
    start_all(
        &mut all,
        &peers,
        &["--max-memory", &limit, "--eviction-policy", "volatile-lru"],
    );
    let budget = 3 * LIMIT / VALUE_BYTES as u64;
    let accepted = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let late = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak_anonymous = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let mut connection = all[client % all.len()].redis();
        let (accepted, errors, late) = (accepted.clone(), errors.clone(), late.clone());
        clients.push(std::thread::spawn(move || {
            let value = vec![b'v'; VALUE_BYTES];
            let mut sent = 0;
            // The first refusal ends the fill (it is the failure this test looks for).
            while accepted.load(Ordering::Relaxed) < budget
                && errors.lock().expect("errors").is_empty()
            {
                let mut pipe = redis::pipe();
                // Each reply in its place: an OOM is a reply, not a failed pipeline.
                pipe.ignore_errors();
                for index in sent..sent + PIPELINE {
                    pipe.cmd("SET")
                        .arg(format!("fill:{client}:{index}"))
                        .arg(&value[..])
                        .arg("EX")
                        .arg(3600);
                }
                sent += PIPELINE;
                let replies: Vec<redis::Value> = pipe
                    .query(&mut connection)
                    .unwrap_or_else(|error| panic!("client {client}: {error}"));
                for reply in replies {
                    match reply {
                        redis::Value::Okay => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        // Applied, acknowledged late by a peer on a loaded machine: it
                        // replicates (as the e2e fills count it).
                        redis::Value::ServerError(error) if error.code() == "NOREPLICAS" => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            late.fetch_add(1, Ordering::Relaxed);
                        }
                        redis::Value::ServerError(error) => errors
                            .lock()
                            .expect("errors")
                            .push((accepted.load(Ordering::Relaxed), format!("{error:?}"))),
                        other => errors
                            .lock()
                            .expect("errors")
                            .push((accepted.load(Ordering::Relaxed), format!("{other:?}"))),
                    }
                }
            }
        }));
    }
    let pids: Vec<u32> = all.iter().map(Node::pid).collect();
    let watcher = {
        let (accepted, peak, done) = (accepted.clone(), peak_anonymous.clone(), done.clone());
        std::thread::spawn(move || {
            while accepted.load(Ordering::Relaxed) < budget && !done.load(Ordering::Relaxed) {
                for pid in &pids {
                    peak.fetch_max(anonymous_resident(*pid), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("the watcher thread panicked");
    let accepted = accepted.load(Ordering::Relaxed);
    let errors = errors.lock().expect("errors").clone();
    let mut figures = Vec::new();
    let mut evicted = 0;
    for node in &all {
        let keys: u64 = redis::cmd("DBSIZE")
            .query(&mut node.redis())
            .expect("DBSIZE");
        evicted += info_field(node, "stats", "evicted_keys");
        figures.push(format!(
            "{}: keys={keys} used_memory={} dataset={} tombstones={} alarm={}",
            node.name,
            info_field(node, "memory", "used_memory"),
            info_field(node, "memory", "used_memory_dataset"),
            info_field(node, "memory", "memory_tombstones"),
            info_field(node, "memory", "memory_alarm"),
        ));
        assert!(
            keys >= 2000,
            "{} kept only {keys} keys: eviction emptied it ({figures:?}); first refusal {:?}",
            node.name,
            errors.first()
        );
    }
    let peak = peak_anonymous.load(Ordering::Relaxed);
    println!(
        "LRU-FILL accepted={accepted} noreplicas={} errors={} evicted={evicted} peak_anonymous={peak} in {:.1}s {figures:?}",
        late.load(Ordering::Relaxed),
        errors.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        errors.iter().take(3).collect::<Vec<_>>(),
        Vec::<&(u64, String)>::new(),
        "{} writes of {accepted} were refused ({figures:?})",
        errors.len()
    );
    assert!(
        evicted > accepted / 2,
        "only {evicted} evictions for {accepted} writes"
    );
    assert!(
        peak < LIMIT,
        "a node's anonymous memory reached {peak} bytes, over the {LIMIT}-byte limit"
    );
}
