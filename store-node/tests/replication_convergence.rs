//! Replication between in-process nodes converges: three nodes over the in-memory network and
//! over real TCP on 127.0.0.1 (with a node leaving), and a partition whose heal needs
//! anti-entropy, after which the last writer wins everywhere.

mod replication_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use replication_support::{
    address, converged, fast_config, memory_cluster, shutdown, wait_until, Node, SharedPeers,
};
use store_node::replication::{
    InMemoryNetwork, MemoryReplica, NodeState, Replication, TcpTransport, Transport, WriteAck,
};
use store_node::store::Stamp;

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
                .map(|record| record.stamp())
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
