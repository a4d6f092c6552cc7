//! One suite every transport passes (request and answer, a large message, queued messages
//! flushed at once, clean close, a refused connection), run over TCP and in memory, and the
//! partitions of the in-memory network.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{InMemoryNetwork, PeerKeys, PeerSecurity, TcpTransport, Transport};
use crate::replication::wire::{Hello, Message, NodeState, DEFAULT_MAX_FRAME, PROTOCOL_VERSION};
use crate::tls::testing::{temp_dir, TestCa};
use crate::tls::TlsContext;

fn hello(name: &str) -> Message {
    Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster: "test".into(),
        node_name: name.into(),
        node_id: 1,
        advertise: String::new(),
        state: NodeState::Ready,
        has_data: false,
    })
}

/// Messages queued and flushed once, as a link's writer sends what it has queued.
fn queued_messages() -> Vec<Message> {
    vec![
        Message::Ack { seq: 1 },
        Message::Heartbeat {
            state: NodeState::Ready,
            head: 9,
            memory_alarm: false,
            wall_ms: 5,
            echo_ms: 0,
        },
        hello("queued"),
    ]
}

/// The suite every transport passes: a request/answer exchange, a large message, several
/// messages queued and flushed at once, clean close, and a refused connection.
async fn transport_suite(
    server: &dyn Transport,
    client: &dyn Transport,
    listen: &str,
    unused: &str,
) {
    let mut listener = server.listen(listen).await.expect("listen");
    let address = listener.local_address();
    let accepted = tokio::spawn(async move {
        let mut connection = listener.accept().await.expect("accept");
        let received = connection.receiver.recv().await.expect("server recv");
        connection
            .sender
            .send(hello("server"))
            .await
            .expect("server send");
        let big = connection.receiver.recv().await.expect("big");
        let mut queued = Vec::new();
        for _ in 0..queued_messages().len() {
            let message = connection.receiver.recv().await.expect("queued");
            queued.extend(message.map(|(message, _)| message));
        }
        (
            received.map(|(message, _)| message),
            big.map(|(message, _)| message),
            queued,
            connection,
        )
    });
    let mut connection = client.connect(&address).await.expect("connect");
    let sent = connection.sender.send(hello("client")).await.expect("send");
    assert!(sent > 8);
    let answer = connection
        .receiver
        .recv()
        .await
        .expect("recv")
        .map(|(message, _)| message);
    assert_eq!(answer, Some(hello("server")));
    let big = Message::Digest {
        buckets: vec![7; 100_000],
    };
    connection.sender.send(big.clone()).await.expect("send big");
    assert_eq!(connection.sender.queued(), 0);
    let mut queued_len = 0;
    for message in queued_messages() {
        queued_len += connection.sender.queue(&message).expect("queue");
    }
    assert_eq!(connection.sender.queued(), queued_len);
    connection.sender.flush().await.expect("flush");
    assert_eq!(connection.sender.queued(), 0);
    let (received, received_big, queued, server_connection) = accepted.await.expect("join");
    assert_eq!(received, Some(hello("client")));
    assert_eq!(received_big, Some(big));
    assert_eq!(queued, queued_messages());
    drop(server_connection);
    assert!(matches!(
        connection.receiver.recv().await,
        Ok(None) | Err(_)
    ));
    assert!(client.connect(unused).await.is_err());
}

#[tokio::test]
async fn tcp_transport_passes_the_suite() {
    let transport = TcpTransport::new(DEFAULT_MAX_FRAME);
    // A port that was just free, then released: connecting to it is refused.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.to_string())
        .unwrap_or_default();
    transport_suite(&transport, &transport, "127.0.0.1:0", &unused).await;
}

fn unused_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.to_string())
        .unwrap_or_default()
}

fn keyed(dir: &std::path::Path, key: &str) -> PeerSecurity {
    let path = dir.join(format!("key-{}", key.len()));
    std::fs::write(&path, key).expect("key file");
    PeerSecurity {
        keys: Some(Arc::new(PeerKeys::load(&path).expect("keys"))),
        ..PeerSecurity::default()
    }
}

fn mutual_tls(dir: &std::path::Path, ca: &TestCa, serial: u8) -> PeerSecurity {
    let settings = ca.write(&dir.join(format!("node-{serial}")), serial);
    PeerSecurity {
        tls: Some(Arc::new(TlsContext::load(settings).expect("TLS"))),
        ..PeerSecurity::default()
    }
}

#[tokio::test]
async fn keyed_tcp_transport_passes_the_suite() {
    let dir = temp_dir("transport-keyed");
    let security = keyed(&dir, "a-cluster-key-0123456789");
    let transport = TcpTransport::secured(DEFAULT_MAX_FRAME, security);
    transport_suite(&transport, &transport, "127.0.0.1:0", &unused_address()).await;
}

#[tokio::test]
async fn mutual_tls_transport_passes_the_suite() {
    let dir = temp_dir("transport-tls");
    let ca = TestCa::new();
    let mut server = mutual_tls(&dir, &ca, 1);
    server.keys = keyed(&dir, "a-cluster-key-0123456789").keys;
    let mut client = mutual_tls(&dir, &ca, 2);
    client.keys = server.keys.clone();
    let server = TcpTransport::secured(DEFAULT_MAX_FRAME, server);
    let client = TcpTransport::secured(DEFAULT_MAX_FRAME, client);
    transport_suite(&server, &client, "127.0.0.1:0", &unused_address()).await;
}

/// Dials `server` from `client`: the dial must fail, the listener hand over nothing, and the
/// server count one refusal in `counter`.
async fn refused(server: PeerSecurity, client: PeerSecurity, counter: &str) {
    let refusals = server.refusals.clone();
    let server = TcpTransport::secured(DEFAULT_MAX_FRAME, server);
    let client = TcpTransport::secured(DEFAULT_MAX_FRAME, client);
    let mut listener = server.listen("127.0.0.1:0").await.expect("listen");
    let address = listener.local_address();
    if let Ok(mut connection) = client.connect(&address).await {
        // A client with nothing to prove connects, sends its hello, and is cut off.
        let _ = connection.sender.send(hello("intruder")).await;
        assert!(matches!(
            connection.receiver.recv().await,
            Ok(None) | Err(_)
        ));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "a refused connection was handed over"
    );
    let counted = refusals
        .by_reason()
        .iter()
        .find(|(reason, _)| *reason == counter)
        .map(|(_, count)| *count);
    assert_eq!(counted, Some(1), "{:?}", refusals.by_reason());
    assert_eq!(refusals.hello.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_dialer_with_another_key_or_none_is_refused() {
    let dir = temp_dir("transport-wrong-key");
    refused(
        keyed(&dir, "a-cluster-key-0123456789"),
        keyed(&dir, "another-cluster-key-0123456789"),
        "key",
    )
    .await;
    refused(
        keyed(&dir, "a-cluster-key-0123456789"),
        PeerSecurity::default(),
        "key",
    )
    .await;
}

#[tokio::test]
async fn a_dialer_without_a_certificate_of_the_cluster_ca_is_refused() {
    let dir = temp_dir("transport-wrong-ca");
    let ca = TestCa::new();
    let stranger = TestCa::new();
    refused(
        mutual_tls(&dir, &ca, 1),
        mutual_tls(&dir, &stranger, 2),
        "tls",
    )
    .await;
    refused(mutual_tls(&dir, &ca, 3), PeerSecurity::default(), "tls").await;
}

#[tokio::test]
async fn in_memory_transport_passes_the_suite() {
    let network = InMemoryNetwork::new();
    transport_suite(
        &network.transport("a:1"),
        &network.transport("b:1"),
        "a:1",
        "nobody:1",
    )
    .await;
}

#[tokio::test]
async fn partitions_break_connections_and_refuse_new_ones_until_healed() {
    let network = InMemoryNetwork::new();
    let server = network.transport("a:1");
    let client = network.transport("b:1");
    let mut listener = server.listen("a:1").await.expect("listen");
    let mut connection = client.connect("a:1").await.expect("connect");
    let mut accepted = listener.accept().await.expect("accept");
    network.partition(&["a:1"], &["b:1"]);
    assert!(connection.sender.send(hello("b")).await.is_err());
    assert!(accepted.receiver.recv().await.is_err());
    assert!(client.connect("a:1").await.is_err());
    network.heal();
    let mut connection = client.connect("a:1").await.expect("reconnect");
    let mut accepted = listener.accept().await.expect("accept again");
    connection.sender.send(hello("b")).await.expect("send");
    assert_eq!(
        accepted
            .receiver
            .recv()
            .await
            .ok()
            .flatten()
            .map(|(message, _)| message),
        Some(hello("b"))
    );
}
