//! Publications between replication engines over TCP on 127.0.0.1: a peer node discovered at
//! two addresses (`127.0.0.1:port` and `localhost:port`, as an IP and a DNS name) has two
//! links from the publisher and still gets each publication once; and a peer of another
//! protocol version is refused at the handshake, after the acceptor told it its own version.

mod replication_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use replication_support::{fast_config, wait_until, Node, SharedPeers};
use store_node::replication::wire::{Hello, Message, NodeState as WireState, PROTOCOL_VERSION};
use store_node::replication::{MemoryReplica, NodeState, Replication, TcpTransport, Transport};

async fn start_tcp_node(name: &str, peers: &SharedPeers) -> Node {
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new(16 << 20));
    let replica = Arc::new(MemoryReplica::new());
    let replication = Replication::start(
        fast_config(name, "127.0.0.1:0"),
        replica.clone(),
        transport,
        Arc::new(peers.clone()),
    )
    .await
    .expect("start");
    Node {
        name: name.to_string(),
        replica,
        replication,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_discovered_at_two_addresses_gets_each_publication_once() {
    let (publisher_peers, receiver_peers) = (SharedPeers::default(), SharedPeers::default());
    let publisher = start_tcp_node("pub-0", &publisher_peers).await;
    let receiver = start_tcp_node("pub-1", &receiver_peers).await;
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    assert!(receiver
        .replication
        .set_publish_sink(Arc::new(move |_, _, message| sink
            .lock()
            .push(message.clone()))));
    let receiver_port = receiver
        .replication
        .local_address()
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let publisher_address = publisher.replication.local_address().to_string();
    let receiver_addresses = [
        format!("127.0.0.1:{receiver_port}"),
        format!("localhost:{receiver_port}"),
    ];
    publisher_peers.set(&[
        publisher_address.clone(),
        receiver_addresses[0].clone(),
        receiver_addresses[1].clone(),
    ]);
    receiver_peers.set(&[
        publisher_address.clone(),
        receiver.replication.local_address().to_string(),
    ]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let peers = publisher.replication.peers();
            publisher.replication.state() == NodeState::Ready
                && receiver.replication.state() == NodeState::Ready
                && peers.len() == 2
                && peers
                    .iter()
                    .all(|peer| peer.connected && peer.name == "pub-1")
        })
        .await,
        "both links to the receiver come up: {:?}",
        publisher.replication.peers()
    );

    let messages: Vec<Bytes> = (0..50)
        .map(|index| Bytes::from(format!("message-{index}")))
        .collect();
    let sent_before = publisher.replication.publish_counts().sent;
    for message in &messages {
        publisher
            .replication
            .publish(false, Bytes::from_static(b"news"), message.clone());
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            let got = received.lock();
            messages.iter().all(|message| got.contains(message))
        })
        .await,
        "every publication arrives"
    );
    // A duplicate would come over the other link: give it the time a link needs.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().clone();
    for message in &messages {
        assert_eq!(
            got.iter().filter(|item| *item == message).count(),
            1,
            "{message:?} in {got:?}"
        );
    }
    assert_eq!(
        publisher.replication.publish_counts().sent - sent_before,
        messages.len() as u64,
        "one link carries each publication"
    );
    publisher.replication.shutdown();
    receiver.replication.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_protocol_version_is_refused_after_learning_ours() {
    let peers = SharedPeers::default();
    let node = start_tcp_node("version-0", &peers).await;
    peers.set(&[node.replication.local_address().to_string()]);
    assert!(
        wait_until(Duration::from_secs(10), || node.replication.state()
            == NodeState::Ready)
        .await
    );
    let transport = TcpTransport::new(16 << 20);
    let mut connection = transport
        .connect(node.replication.local_address())
        .await
        .expect("connect");
    connection
        .sender
        .send(Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION - 1,
            cluster: "test".to_string(),
            node_name: "old-node".to_string(),
            node_id: 99,
            advertise: "127.0.0.1:1".to_string(),
            state: WireState::Ready,
            has_data: false,
        }))
        .await
        .expect("send hello");
    let answer = tokio::time::timeout(Duration::from_secs(5), connection.receiver.recv())
        .await
        .expect("an answer");
    match answer {
        Ok(Some((Message::Hello(hello), _))) => {
            assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
            assert_eq!(hello.node_name, "version-0");
        }
        other => panic!("expected the node's hello, got {other:?}"),
    }
    // Then the node closes the link: nothing else comes.
    let next = tokio::time::timeout(Duration::from_secs(5), connection.receiver.recv())
        .await
        .expect("the link closes");
    assert!(
        matches!(next, Ok(None) | Err(_)),
        "the link must close, got {next:?}"
    );
    node.replication.shutdown();
}
