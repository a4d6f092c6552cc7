//! Multi-node replication scenarios in one process: nodes are `Replication` engines over
//! `MemoryReplica`s, connected by the partitionable in-memory network (and once over real TCP on
//! 127.0.0.1), with scripted partitions, a joining node under write load, write-ack levels,
//! touch coalescing and tombstone collection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use store_node::replication::membership::MembershipError;
use store_node::replication::{
    InMemoryNetwork, MemoryReplica, NodeState, PeerResolver, Replica, Replication,
    ReplicationConfig, ReplicationError, TcpTransport, Transport, WriteAck,
};
use store_node::store::{Record, RecordState, Stamp, Touch, Value};

/// A peer list tests can change while nodes run (what DNS does in Kubernetes).
#[derive(Clone, Default)]
struct SharedPeers(Arc<Mutex<BTreeSet<String>>>);

impl SharedPeers {
    fn set(&self, addresses: &[String]) {
        *self.0.lock() = addresses.iter().cloned().collect();
    }
}

impl PeerResolver for SharedPeers {
    fn resolve(&self) -> BoxFuture<'_, Result<BTreeSet<String>, MembershipError>> {
        Box::pin(async move { Ok(self.0.lock().clone()) })
    }

    fn has_sources(&self) -> bool {
        true
    }
}

const FAR_FUTURE: u64 = 4_000_000_000_000;

struct Node {
    name: String,
    replica: Arc<MemoryReplica>,
    replication: Replication,
}

impl Node {
    fn write(&self, key: &str, value: &str) -> u64 {
        let record = Record::live(
            Bytes::copy_from_slice(key.as_bytes()),
            self.replication.stamp(),
            Value::String(Bytes::copy_from_slice(value.as_bytes())),
            Some(FAR_FUTURE),
        );
        self.replica.put_local(record.clone());
        self.replication.submit(record)
    }

    fn delete(&self, key: &str) -> u64 {
        let now = self.replication.clock().wall_ms();
        let record = Record::tombstone(
            Bytes::copy_from_slice(key.as_bytes()),
            self.replication.stamp(),
            now,
        );
        self.replica.put_local(record.clone());
        self.replication.submit(record)
    }

    fn value(&self, key: &str) -> Option<String> {
        match self.replica.get(key.as_bytes())?.state {
            RecordState::Live {
                value: Value::String(value),
                ..
            } => Some(String::from_utf8_lossy(&value).into_owned()),
            _ => None,
        }
    }

    fn expire_at(&self, key: &str) -> Option<u64> {
        match self.replica.get(key.as_bytes())?.state {
            RecordState::Live { expire_at, .. } => expire_at,
            RecordState::Tombstone { .. } => None,
        }
    }
}

fn fast_config(name: &str, listen: &str) -> ReplicationConfig {
    let mut config = ReplicationConfig::new(
        "test",
        name,
        store_node::replication::generate_node_id(),
        listen,
    );
    config.touch_flush_interval = Duration::from_millis(50);
    config.heartbeat_interval = Duration::from_millis(50);
    config.peer_timeout = Duration::from_millis(600);
    config.connect_timeout = Duration::from_millis(300);
    config.reconnect_max_backoff = Duration::from_millis(100);
    config.discovery_interval = Duration::from_millis(100);
    config.anti_entropy_interval = Duration::from_millis(500);
    config.tombstone_gc_interval = Duration::from_millis(100);
    config.first_start_wait = Duration::from_millis(300);
    config
}

fn address(name: &str) -> String {
    format!("{name}:7379")
}

async fn start_memory_node(
    network: &InMemoryNetwork,
    name: &str,
    peers: &SharedPeers,
    config: ReplicationConfig,
) -> Node {
    let replica = Arc::new(MemoryReplica::new());
    let replication = Replication::start(
        config,
        replica.clone(),
        Arc::new(network.transport(&address(name))),
        Arc::new(peers.clone()),
    )
    .await
    .expect("start node");
    Node {
        name: name.to_string(),
        replica,
        replication,
    }
}

async fn memory_cluster(
    network: &InMemoryNetwork,
    count: usize,
    tweak: impl Fn(&mut ReplicationConfig),
) -> (Vec<Node>, SharedPeers) {
    let peers = SharedPeers::default();
    let names: Vec<String> = (0..count).map(|index| format!("node-{index}")).collect();
    peers.set(&names.iter().map(|name| address(name)).collect::<Vec<_>>());
    let mut nodes = Vec::new();
    for name in &names {
        let mut config = fast_config(name, &address(name));
        tweak(&mut config);
        nodes.push(start_memory_node(network, name, &peers, config).await);
    }
    assert!(
        wait_until(Duration::from_secs(10), || nodes
            .iter()
            .all(|node| node.replication.state() == NodeState::Ready))
        .await,
        "cluster never became ready"
    );
    (nodes, peers)
}

async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

fn converged(nodes: &[&Node]) -> bool {
    let first = nodes[0].replica.digest();
    nodes.iter().all(|node| node.replica.digest() == first)
}

fn shutdown(nodes: &[Node]) {
    for node in nodes {
        node.replication.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_three_nodes_converge() {
    let network = InMemoryNetwork::new();
    let (nodes, _peers) = memory_cluster(&network, 3, |_| {}).await;
    for index in 0..300 {
        let node = &nodes[index % 3];
        let seq = node.write(&format!("session:{index}"), &format!("value-{index}"));
        node.replication
            .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
            .await
            .expect("all peers ack");
    }
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || converged(&all)).await);
    for node in &nodes {
        assert_eq!(node.replica.len(), 300, "{}", node.name);
        assert_eq!(node.value("session:7").as_deref(), Some("value-7"));
        let peers = node.replication.peers();
        assert_eq!(peers.len(), 2);
        assert!(
            peers
                .iter()
                .all(|peer| peer.connected && peer.lag_ops == 0 && peer.name.starts_with("node-")),
            "{peers:?}"
        );
    }
    // node-0 seeded the empty cluster; the others bootstrapped from a snapshot.
    assert_eq!(
        nodes[0]
            .replication
            .metrics()
            .snapshot()
            .snapshot_records_received,
        0
    );
    shutdown(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_only_ordinal_zero_seeds_an_empty_cluster() {
    let network = InMemoryNetwork::new();
    let peers = SharedPeers::default();
    peers.set(&["node-0", "node-1", "node-2"].map(address));
    let one = start_memory_node(
        &network,
        "node-1",
        &peers,
        fast_config("node-1", &address("node-1")),
    )
    .await;
    let two = start_memory_node(
        &network,
        "node-2",
        &peers,
        fast_config("node-2", &address("node-2")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for node in [&one, &two] {
        assert_eq!(node.replication.state(), NodeState::Loading);
        let reason = node.replication.not_ready_reason().unwrap_or_default();
        assert!(reason.contains("never seeds an empty cluster"), "{reason}");
    }
    let zero = start_memory_node(
        &network,
        "node-0",
        &peers,
        fast_config("node-0", &address("node-0")),
    )
    .await;
    let nodes = [zero, one, two];
    assert!(
        wait_until(Duration::from_secs(5), || nodes
            .iter()
            .all(|node| node.replication.state() == NodeState::Ready))
        .await
    );
    assert_eq!(nodes[0].replication.not_ready_reason(), None);
    shutdown(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_fourth_node_bootstraps_under_writes() {
    let network = InMemoryNetwork::new();
    let (nodes, peers) = memory_cluster(&network, 3, |_| {}).await;
    for index in 0..2_000 {
        nodes[index % 3].write(&format!("preload:{index}"), "x");
    }
    let nodes = Arc::new(nodes);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let nodes = nodes.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut index = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let node = &nodes[index % 3];
                node.write(&format!("live:{}", index % 500), &format!("v{index}"));
                if index.is_multiple_of(7) {
                    node.delete(&format!("preload:{}", index % 2_000));
                }
                index += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            index
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all_addresses: Vec<String> = (0..4)
        .map(|index| address(&format!("node-{index}")))
        .collect();
    peers.set(&all_addresses);
    let joiner = start_memory_node(
        &network,
        "node-3",
        &peers,
        fast_config("node-3", &address("node-3")),
    )
    .await;
    assert_eq!(joiner.replication.state(), NodeState::Loading);
    assert!(joiner
        .replication
        .not_ready_reason()
        .is_some_and(|reason| reason.starts_with("loading")));
    assert!(
        wait_until(Duration::from_secs(10), || joiner.replication.state()
            == NodeState::Ready)
        .await,
        "joiner never ready"
    );
    let received = joiner
        .replication
        .metrics()
        .snapshot()
        .snapshot_records_received;
    assert!(received >= 2_000, "snapshot carried {received} records");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    assert!(writes > 50, "only {writes} writes during the join");
    let all: Vec<&Node> = nodes.iter().chain(std::iter::once(&joiner)).collect();
    assert!(
        wait_until(Duration::from_secs(5), || converged(&all)).await,
        "digests differ after the join"
    );
    // Every preload key (live or tombstone) plus one per distinct live key written.
    let expected = 2_000 + writes.min(500);
    for node in &all {
        assert_eq!(node.replica.len(), expected, "{}", node.name);
    }
    shutdown(&nodes);
    joiner.replication.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_partition_heals_and_last_writer_wins_everywhere() {
    let network = InMemoryNetwork::new();
    // A tiny log: the partition outlasts it, so healing needs anti-entropy, not just the log.
    let (nodes, _peers) = memory_cluster(&network, 3, |config| {
        config.oplog_max_items = 20;
        config.anti_entropy_interval = Duration::from_millis(1_000);
    })
    .await;
    for index in 0..50 {
        let seq = nodes[0].write(&format!("shared:{index}"), "before");
        nodes[0]
            .replication
            .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
            .await
            .expect("ack");
    }
    network.partition(
        &[&address("node-0")],
        &[&address("node-1"), &address("node-2")],
    );
    let mut written: Vec<(String, Stamp, Option<String>)> = Vec::new();
    for index in 0..40u32 {
        let key = format!("conflict:{index}");
        // Both sides write the same keys; alternate which side writes last in real time.
        let (first, second) = if index.is_multiple_of(2) {
            (&nodes[0], &nodes[1])
        } else {
            (&nodes[1], &nodes[0])
        };
        for (node, value) in [
            (first, format!("{}-{index}", first.name)),
            (second, format!("{}-{index}", second.name)),
        ] {
            node.write(&key, &value);
            let stamp = node
                .replica
                .get(key.as_bytes())
                .map(|record| record.stamp)
                .expect("written");
            written.push((key.clone(), stamp, Some(value)));
        }
    }
    for index in 0..100 {
        nodes[0].write(&format!("left:{index}"), "l");
        nodes[2].write(&format!("right:{index}"), "r");
    }
    for index in 0..10 {
        // Deletes on one side, overwrites on the other.
        nodes[0].delete(&format!("shared:{index}"));
        nodes[1].write(&format!("shared:{}", index + 5), "overwritten");
    }
    let healed_at = Instant::now();
    network.heal();
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(
        wait_until(Duration::from_secs(3), || converged(&all)).await,
        "no convergence after the heal"
    );
    let took = healed_at.elapsed();
    assert!(
        took < Duration::from_millis(2_000),
        "converged in {took:?}, longer than the anti-entropy interval plus reconnection"
    );
    for index in 0..40u32 {
        let key = format!("conflict:{index}");
        let winner = written
            .iter()
            .filter(|(written_key, _, _)| *written_key == key)
            .max_by_key(|(_, stamp, _)| *stamp)
            .and_then(|(_, _, value)| value.clone());
        for node in &nodes {
            assert_eq!(node.value(&key), winner, "{} on {}", key, node.name);
        }
    }
    for node in &nodes {
        assert_eq!(node.value("left:99").as_deref(), Some("l"));
        assert_eq!(node.value("right:99").as_deref(), Some("r"));
        assert_eq!(node.value("shared:2"), None, "a delete on one side holds");
        assert_eq!(node.value("shared:12").as_deref(), Some("overwritten"));
        assert_eq!(node.value("shared:30").as_deref(), Some("before"));
    }
    let repairs: u64 = nodes
        .iter()
        .map(|node| node.replication.metrics().snapshot().repairs_applied)
        .sum();
    assert!(
        repairs > 0,
        "the log was too small to heal alone; anti-entropy must have repaired"
    );
    shutdown(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_write_ack_one_and_all() {
    let network = InMemoryNetwork::new();
    let (nodes, _peers) = memory_cluster(&network, 3, |_| {}).await;
    let seq = nodes[0].write("a", "1");
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("all acked");
    assert_eq!(nodes[2].value("a").as_deref(), Some("1"));

    network.partition(
        &[&address("node-2")],
        &[&address("node-0"), &address("node-1")],
    );
    let seq = nodes[0].write("b", "2");
    assert_eq!(
        nodes[0]
            .replication
            .wait_acked(seq, WriteAck::None, Duration::ZERO)
            .await,
        Ok(())
    );
    let started = Instant::now();
    let error = nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_millis(300))
        .await;
    assert_eq!(
        error,
        Err(ReplicationError::NotEnoughReplicas {
            acked: 1,
            required: 2,
            timeout_ms: 300
        })
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        error.map_err(|error| error.to_string()),
        Err("NOREPLICAS Not enough good replicas to write: 1 of 2 peer(s) acknowledged within 300 ms".to_string())
    );
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::One, Duration::from_secs(2))
        .await
        .expect("one acked");
    assert_eq!(nodes[1].value("b").as_deref(), Some("2"));
    assert_eq!(nodes[2].value("b"), None);
    let lagging = nodes[0]
        .replication
        .peers()
        .into_iter()
        .find(|peer| peer.name == "node-2")
        .expect("node-2 listed");
    assert!(lagging.lag_ops >= 1);

    network.heal();
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
        .await
        .expect("all acked after the heal");
    assert_eq!(nodes[2].value("b").as_deref(), Some("2"));
    shutdown(&nodes);
}

/// The op-log drops the writes every member holds (at the next append), and still keeps what a
/// member that is cut off lacks, so the member resumes from the log without anti-entropy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_log_releases_what_every_member_holds_and_still_resumes() {
    let network = InMemoryNetwork::new();
    let (nodes, _peers) = memory_cluster(&network, 3, |config| {
        // Only the log can deliver within the test.
        config.anti_entropy_interval = Duration::from_secs(600);
    })
    .await;
    for index in 0..100 {
        let seq = nodes[0].write(&format!("held:{index}"), "v");
        nodes[0]
            .replication
            .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
            .await
            .expect("all acked");
    }
    let seq = nodes[0].write("next", "v");
    assert_eq!(
        nodes[0].replication.log_len_and_bytes().0,
        1,
        "the 100 writes both peers held are dropped"
    );
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
        .await
        .expect("all acked");
    let repairs_before: u64 = nodes
        .iter()
        .map(|node| node.replication.metrics().snapshot().repairs_applied)
        .sum();

    network.partition(
        &[&address("node-2")],
        &[&address("node-0"), &address("node-1")],
    );
    for index in 0..30 {
        let seq = nodes[0].write(&format!("cut:{index}"), "v");
        nodes[0]
            .replication
            .wait_acked(seq, WriteAck::One, Duration::from_secs(5))
            .await
            .expect("one acked");
    }
    assert_eq!(
        nodes[0].replication.log_len_and_bytes().0,
        30,
        "node-2 held everything up to `next` and nothing after"
    );
    // Longer than the peer timeout: the links drop and are dialled again after the heal.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    network.heal();
    assert!(
        wait_until(Duration::from_secs(5), || (0..30)
            .all(
                |index| nodes[2].value(&format!("cut:{index}")).as_deref() == Some("v")
            ))
        .await,
        "node-2 did not resume from the log"
    );
    let repairs_after: u64 = nodes
        .iter()
        .map(|node| node.replication.metrics().snapshot().repairs_applied)
        .sum();
    assert_eq!(repairs_after, repairs_before, "no anti-entropy repair");
    assert_eq!(nodes[2].value("held:99").as_deref(), Some("v"));
    shutdown(&nodes);
}

/// The rolling-restart `NOREPLICAS` with `--write-ack one`: a restarted node (new address, not
/// yet in its peers' DNS) must not report ready before its peers dial it, and once ready it
/// must count for their writes at once, before their anti-entropy round closes its gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_restarted_node_acks_writes_as_soon_as_it_is_ready() {
    let network = InMemoryNetwork::new();
    // Heartbeats every 3 s: node-0 learns that the restarted node is ready (and runs the
    // round that closes its gap) only long after the writes below.
    let slow_heartbeats = |config: &mut ReplicationConfig| {
        config.heartbeat_interval = Duration::from_secs(3);
        config.peer_timeout = Duration::from_secs(10);
    };
    let (mut nodes, peers) = memory_cluster(&network, 3, slow_heartbeats).await;
    let seq = nodes[0].write("before", "1");
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
        .await
        .expect("all acked");

    let old = nodes.pop().expect("node-2");
    let _ = old.replication.leave(Duration::from_secs(2)).await;
    old.replication.shutdown();
    // node-2 comes back at a new address that node-0 and node-1 do not resolve yet.
    let own_view = SharedPeers::default();
    own_view.set(&[address("node-0"), address("node-1"), address("node-2b")]);
    let mut config = fast_config("node-2", &address("node-2b"));
    slow_heartbeats(&mut config);
    let replica = Arc::new(MemoryReplica::new());
    let replication = Replication::start(
        config,
        replica.clone(),
        Arc::new(network.transport(&address("node-2b"))),
        Arc::new(own_view),
    )
    .await
    .expect("start node-2 again");
    let restarted = Node {
        name: "node-2".into(),
        replica,
        replication,
    };
    assert!(
        wait_until(Duration::from_secs(5), || restarted
            .value("before")
            .is_some())
        .await,
        "no snapshot"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(restarted.replication.state(), NodeState::Loading);
    assert_eq!(
        restarted.replication.not_ready_reason().as_deref(),
        Some("loading: waiting for node-0, node-1 to connect back")
    );

    peers.set(&[address("node-0"), address("node-1"), address("node-2b")]);
    assert!(
        wait_until(Duration::from_secs(5), || restarted.replication.state()
            == NodeState::Ready)
        .await,
        "not ready after the peers learned the new address: {:?}",
        restarted.replication.not_ready_reason()
    );
    // The rolling restart goes on at once: node-1 stops.
    let stopped = nodes.pop().expect("node-1");
    let _ = stopped.replication.leave(Duration::from_millis(200)).await;
    stopped.replication.shutdown();
    let seq = nodes[0].write("after", "2");
    nodes[0]
        .replication
        .wait_writes_acked(seq, seq, WriteAck::One, Duration::from_millis(500))
        .await
        .expect("the restarted node acknowledges");
    assert_eq!(restarted.value("after").as_deref(), Some("2"));
    shutdown(&nodes);
    restarted.replication.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_touches_coalesce_and_never_resurrect() {
    let network = InMemoryNetwork::new();
    let (nodes, _peers) = memory_cluster(&network, 2, |config| {
        // Flushed by hand below, so the count on the wire is exact.
        config.touch_flush_interval = Duration::from_secs(3600);
    })
    .await;
    let (zero, one) = (&nodes[0], &nodes[1]);
    let seq = zero.write("session", "data");
    zero.replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("ack");
    let stamp = zero
        .replica
        .get(b"session")
        .map(|record| record.stamp)
        .expect("stored");
    let sent_before = zero.replication.metrics().snapshot().touches_sent;
    for offset in 1..=100u64 {
        let touch = Touch {
            key: Bytes::from_static(b"session"),
            value_stamp: stamp,
            expire_at: FAR_FUTURE + offset,
        };
        zero.replica.apply_touch(&touch);
        zero.replication.submit_touch(touch);
    }
    zero.replication.flush_touches();
    zero.replication
        .wait_acked(
            zero.replication.head(),
            WriteAck::All,
            Duration::from_secs(2),
        )
        .await
        .expect("touch acked");
    assert_eq!(
        zero.replication.metrics().snapshot().touches_sent - sent_before,
        1
    );
    assert_eq!(one.replication.metrics().snapshot().touches_received, 1);
    assert_eq!(one.expire_at("session"), Some(FAR_FUTURE + 100));

    // A touch of a value deleted elsewhere does not bring it back.
    let seq = one.delete("session");
    one.replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("delete acked");
    zero.replication.submit_touch(Touch {
        key: Bytes::from_static(b"session"),
        value_stamp: stamp,
        expire_at: FAR_FUTURE + 1_000,
    });
    zero.replication.flush_touches();
    zero.replication
        .wait_acked(
            zero.replication.head(),
            WriteAck::All,
            Duration::from_secs(2),
        )
        .await
        .expect("acked");
    for node in &nodes {
        assert!(
            node.replica
                .get(b"session")
                .is_some_and(|record| record.is_tombstone()),
            "{}",
            node.name
        );
    }

    // A touch of an overwritten value does not change the new value's expiry.
    let seq = zero.write("other", "old");
    zero.replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("ack");
    let old_stamp = zero
        .replica
        .get(b"other")
        .map(|record| record.stamp)
        .expect("stored");
    let seq = one.write("other", "new");
    one.replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("ack");
    zero.replication.submit_touch(Touch {
        key: Bytes::from_static(b"other"),
        value_stamp: old_stamp,
        expire_at: FAR_FUTURE + 5_000,
    });
    zero.replication.flush_touches();
    zero.replication
        .wait_acked(
            zero.replication.head(),
            WriteAck::All,
            Duration::from_secs(2),
        )
        .await
        .expect("acked");
    for node in &nodes {
        assert_eq!(node.value("other").as_deref(), Some("new"));
        assert_eq!(node.expire_at("other"), Some(FAR_FUTURE), "{}", node.name);
    }
    shutdown(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_tombstones_are_collected_only_after_every_peer_synced() {
    let network = InMemoryNetwork::new();
    let (nodes, _peers) = memory_cluster(&network, 3, |config| {
        config.tombstone_grace = Duration::from_millis(300);
        config.anti_entropy_interval = Duration::from_millis(200);
    })
    .await;
    let seq = nodes[0].write("doomed", "v");
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("ack");
    network.partition(
        &[&address("node-2")],
        &[&address("node-0"), &address("node-1")],
    );
    let seq = nodes[0].delete("doomed");
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::One, Duration::from_secs(2))
        .await
        .expect("ack");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // node-2 has not seen the delete: the others must keep the tombstone, or node-2's old
    // value would come back through anti-entropy after the heal.
    assert_eq!(nodes[0].replica.tombstones(), 1);
    assert_eq!(nodes[1].replica.tombstones(), 1);
    assert_eq!(nodes[2].value("doomed").as_deref(), Some("v"));
    network.heal();
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(
        wait_until(Duration::from_secs(5), || nodes
            .iter()
            .all(|node| node.replica.is_empty())
            && converged(&all))
        .await,
        "tombstone not propagated and collected everywhere: {:?}",
        nodes
            .iter()
            .map(|node| node.replica.get(b"doomed"))
            .collect::<Vec<_>>()
    );
    let collected: u64 = nodes
        .iter()
        .map(|node| node.replication.metrics().snapshot().tombstones_collected)
        .sum();
    assert_eq!(collected, 3);
    // Nothing brings the value back afterwards.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(nodes
        .iter()
        .all(|node| node.replica.get(b"doomed").is_none()));
    shutdown(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_over_tcp_converges_and_leaves() {
    let peers = SharedPeers::default();
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new(16 << 20));
    let mut nodes = Vec::new();
    for index in 0..3 {
        let name = format!("tcp-{index}");
        let replica = Arc::new(MemoryReplica::new());
        let replication = Replication::start(
            fast_config(&name, "127.0.0.1:0"),
            replica.clone(),
            transport.clone(),
            Arc::new(peers.clone()),
        )
        .await
        .expect("start");
        nodes.push(Node {
            name,
            replica,
            replication,
        });
    }
    peers.set(
        &nodes
            .iter()
            .map(|node| node.replication.local_address().to_string())
            .collect::<Vec<_>>(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || nodes
            .iter()
            .all(|node| node.replication.state() == NodeState::Ready))
        .await
    );
    for index in 0..200 {
        let node = &nodes[index % 3];
        let seq = node.write(&format!("k{index}"), "v");
        node.replication
            .wait_acked(seq, WriteAck::All, Duration::from_secs(5))
            .await
            .expect("ack over tcp");
    }
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || converged(&all)).await);
    assert!(nodes.iter().all(|node| node.replica.len() == 200));
    assert!(nodes[0].replication.metrics().snapshot().bytes_sent > 0);

    // node-2 leaves: its last write is flushed first, and write-ack all on the others no
    // longer waits for it.
    nodes[2].write("last", "from-2");
    nodes[2]
        .replication
        .leave(Duration::from_secs(2))
        .await
        .expect("leave flushed");
    assert_eq!(nodes[2].replication.state(), NodeState::Left);
    assert_eq!(nodes[0].value("last").as_deref(), Some("from-2"));
    assert_eq!(nodes[1].value("last").as_deref(), Some("from-2"));
    assert!(
        wait_until(Duration::from_secs(2), || nodes[0]
            .replication
            .peers()
            .iter()
            .any(|peer| peer.name == "tcp-2" && peer.left))
        .await
    );
    nodes[2].replication.shutdown();
    let seq = nodes[0].write("after", "leave");
    nodes[0]
        .replication
        .wait_acked(seq, WriteAck::All, Duration::from_secs(2))
        .await
        .expect("all = remaining peers");
    shutdown(&nodes);
}
