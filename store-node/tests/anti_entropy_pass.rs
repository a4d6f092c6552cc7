//! The cost of one full anti-entropy pass on the real engine: two `MemoryEngine`s holding the
//! same `KEYS` sessions, plus one extra key per bucket on the second, so all 256 buckets differ.
//! One round lists every bucket's keys on both sides and repairs the 256 extra keys. Ignored by
//! default (it loads 1M keys twice); the numbers are in docs/replication.md (Anti-entropy,
//! Cost). At load average 10 or more on 2 cores the link can still drop at the peer timeout:
//!
//! `cargo test --release -p store-node --test anti_entropy_pass -- --ignored --nocapture`
//!
//! With the default peer timeout (5 s) the round should complete; `PASS_PEER_TIMEOUT_S=600`
//! lets a slower implementation finish so it can be timed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store_node::replication::record::{bucket_of, BUCKETS};
use store_node::replication::{
    generate_node_id, InMemoryNetwork, NodeState, Record, Replica, Replication, ReplicationConfig,
    StaticPeers,
};
use store_node::store::{EngineConfig, MemoryEngine, Stamp, Value};

const KEYS: usize = 1_000_000;
const FAR_FUTURE: u64 = 4_000_000_000_000;

fn session(key: Bytes, hlc: u64) -> Record {
    Record::live(
        key,
        Stamp { hlc, origin: 1 },
        Value::String(Bytes::from_static(&[b's'; 64])),
        Some(FAR_FUTURE),
    )
}

async fn start(
    network: &InMemoryNetwork,
    name: &str,
    peer: &str,
    engine: &Arc<MemoryEngine>,
) -> Replication {
    let address = format!("{name}:7379");
    let mut config = ReplicationConfig::new("pass", name, generate_node_id(), &address);
    config.first_start_wait = Duration::from_millis(100);
    // No periodic round: the only round is the one timed.
    config.anti_entropy_interval = Duration::from_secs(3600);
    // The default peer timeout (5 s) unless PASS_PEER_TIMEOUT_S says otherwise (to time a pass
    // that takes longer than the default allows).
    if let Some(seconds) = std::env::var("PASS_PEER_TIMEOUT_S")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        config.peer_timeout = Duration::from_secs(seconds);
    }
    let replica: Arc<dyn Replica> = engine.clone();
    Replication::start(
        config,
        replica,
        Arc::new(network.transport(&address)),
        Arc::new(StaticPeers(BTreeSet::from([format!("{peer}:7379")]))),
    )
    .await
    .expect("replication starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads 1M keys into two engines; run in release for the number"]
async fn full_anti_entropy_pass_at_one_million_keys() {
    let network = InMemoryNetwork::new();
    let first = Arc::new(MemoryEngine::new(EngineConfig::default()));
    let second = Arc::new(MemoryEngine::new(EngineConfig::default()));
    let node_0 = start(&network, "pass-0", "pass-1", &first).await;
    let node_1 = start(&network, "pass-1", "pass-0", &second).await;
    let ready = Instant::now();
    while node_0.state() != NodeState::Ready || node_1.state() != NodeState::Ready {
        assert!(ready.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the first rounds between the empty nodes finish.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let loading = Instant::now();
    for index in 0..KEYS {
        let record = session(Bytes::from(format!("session:{index:012}")), 1 << 20);
        Replica::apply(&*first, &record, 0, 0);
        Replica::apply(&*second, &record, 0, 0);
    }
    let mut extra = BTreeSet::new();
    let mut index = 0;
    while extra.len() < BUCKETS {
        let key = Bytes::from(format!("extra:{index}"));
        if extra.insert(bucket_of(&key)) {
            Replica::apply(&*second, &session(key, 2 << 20), 0, 0);
        }
        index += 1;
    }
    eprintln!("loaded {KEYS} keys twice in {:?}", loading.elapsed());
    let differing = first
        .bucket_digests()
        .iter()
        .zip(second.bucket_digests())
        .filter(|(mine, theirs)| **mine != *theirs)
        .count();
    assert_eq!(differing, BUCKETS);

    let started = Instant::now();
    let rounds = node_0.anti_entropy_now(Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    eprintln!("anti_entropy_now: {rounds} round(s) completed after {elapsed:?}");
    assert_eq!(rounds, 1);
    assert_eq!(first.bucket_digests(), second.bucket_digests());
    assert_eq!(first.len(), (KEYS + BUCKETS) as u64);
    eprintln!(
        "one full anti-entropy pass, {KEYS} keys, {BUCKETS} differing buckets, {BUCKETS} keys repaired: {elapsed:?}"
    );
    node_0.shutdown();
    node_1.shutdown();
}
