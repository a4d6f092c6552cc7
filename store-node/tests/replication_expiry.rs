//! Expiry and deletes across nodes: touches are coalesced and never resurrect a deleted or
//! overwritten value, and tombstones are collected only after every peer synced.

mod replication_support;

use std::time::Duration;

use bytes::Bytes;
use replication_support::{
    address, converged, memory_cluster, shutdown, wait_until, Node, FAR_FUTURE,
};
use store_node::replication::{InMemoryNetwork, Replica, WriteAck};
use store_node::store::Touch;

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
        .map(|record| record.stamp())
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
        .map(|record| record.stamp())
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
