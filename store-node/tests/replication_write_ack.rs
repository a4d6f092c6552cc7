//! Write acknowledgements across a partition (`--write-ack none`, `one`, `all` and the
//! `NOREPLICAS` error), and the op-log releasing what every member holds while it still keeps
//! what a cut-off member lacks.

mod replication_support;

use std::time::{Duration, Instant};

use replication_support::{address, memory_cluster, shutdown, wait_until};
use store_node::replication::{InMemoryNetwork, ReplicationError, WriteAck};

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
