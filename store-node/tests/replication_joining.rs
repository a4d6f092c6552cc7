//! Nodes joining a replicated cluster: only ordinal 0 seeds an empty cluster, a fourth node
//! bootstraps from a snapshot under write load, and a restarted node at a new address waits
//! for its peers to dial it back and then acknowledges their writes at once.

mod replication_support;

use std::sync::Arc;
use std::time::Duration;

use replication_support::{
    address, converged, fast_config, memory_cluster, shutdown, start_memory_node, wait_until, Node,
    SharedPeers,
};
use store_node::replication::{
    InMemoryNetwork, MemoryReplica, NodeState, Replication, ReplicationConfig, WriteAck,
};

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

/// A node with no member to send its writes to (a one-replica cluster) keeps no op-log: without
/// acknowledgements nothing else would release it before its 64 MiB bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_members_keeps_no_op_log() {
    let network = InMemoryNetwork::new();
    let (nodes, _peers) = memory_cluster(&network, 1, |_| {}).await;
    let node = &nodes[0];
    for index in 0..1000 {
        node.write(&format!("session:{index}"), "value");
    }
    // Released at the next discovery round (100 ms here), dropped by the next append.
    assert!(
        wait_until(Duration::from_secs(5), || {
            node.write("tick", "value");
            node.replication.log_len_and_bytes().0 <= 2
        })
        .await,
        "the op-log still holds {} items",
        node.replication.log_len_and_bytes().0
    );
    shutdown(&nodes);
}
