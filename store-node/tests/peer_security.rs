//! Peers authenticate each other before anything else is sent, with real processes on
//! 127.0.0.1: with a peer key, a node of another cluster (another key) and a node without the
//! key are refused, logged with their address and counted, while the cluster's own nodes
//! replicate; a client that speaks the peer protocol without the key gets not one byte; and a
//! cluster with mutual TLS bootstraps a joining node and replicates, refusing a node whose
//! certificate another CA signed and a node without TLS.

mod cluster_support;
mod tls_support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use cluster_support::{eventually, Node};
use redis::Commands;
use tls_support::{temp_dir, Ca};

/// A node's count of refused peer connections for `reason`, from `/metrics`.
fn refusals(node: &Node, reason: &str) -> u64 {
    let Some((200, text)) = node.http_get("/metrics") else {
        return 0;
    };
    let prefix = format!("store_node_peer_connections_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// The names of the peers `node` has a link with.
fn connected_peers(node: &Node) -> Vec<String> {
    let Some((200, body)) = node.http_get("/v1/cluster") else {
        return Vec::new();
    };
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    value["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter(|member| member["self"] == false && member["connected"] == true)
                .filter_map(|member| member["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn write_key(dir: &Path, name: &str, key: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("key file");
    path.display().to_string()
}

#[test]
fn a_node_of_another_cluster_and_a_node_without_the_key_are_refused() {
    let dir = temp_dir("peer-key");
    let key = write_key(&dir, "key", "cluster-one-key-0123456789abcdef");
    let other_key = write_key(&dir, "other", "cluster-two-key-0123456789abcdef");
    let mut nodes: Vec<Node> = (0..2).map(Node::new).collect();
    nodes[0].log = Some(dir.join("t-0.log"));
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    for node in nodes.iter_mut() {
        // JSON logs: the test reads t-0's refusals from them.
        node.start(&peers, &["--peer-key-file", &key, "--log-format", "json"]);
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(60));
    }
    // The cluster's own nodes link up and replicate.
    let _: () = nodes[0].redis().set("session:1", "alice").unwrap();
    assert!(
        eventually(Duration::from_secs(30), || nodes[1]
            .redis()
            .get::<_, Option<String>>("session:1")
            .ok()
            .flatten()
            .as_deref()
            == Some("alice")),
        "the write did not replicate between nodes holding the key"
    );

    // A node of another cluster (another key) dials t-0.
    let mut other = Node::new(2);
    other.name = "other-0".to_string();
    other.start(&[nodes[0].peer_address()], &["--peer-key-file", &other_key]);
    assert!(
        eventually(Duration::from_secs(30), || refusals(&nodes[0], "key") >= 1),
        "t-0 did not refuse the node of another cluster"
    );
    // A node without any key dials t-0.
    let mut keyless = Node::new(3);
    keyless.start(&[nodes[0].peer_address()], &[]);
    let before = refusals(&nodes[0], "key");
    assert!(
        eventually(Duration::from_secs(30), || refusals(&nodes[0], "key")
            > before
            && log_text(&dir.join("t-0.log")).contains("no peer key presented")),
        "t-0 did not refuse the node without a key: {} refusals, log:\n{}",
        refusals(&nodes[0], "key"),
        log_text(&dir.join("t-0.log"))
    );
    let log = log_text(&dir.join("t-0.log"));
    assert!(
        log.contains(r#""message":"refusing peer connection","remote":"127.0.0.1:"#),
        "the refusal names the remote address: {log}"
    );
    assert!(
        log.contains("the peer closed the connection instead of proving the key"),
        "{log}"
    );
    // Neither got anything: no link, no key of the cluster.
    assert_eq!(connected_peers(&nodes[0]), vec!["t-1".to_string()]);
    assert!(connected_peers(&other).is_empty());
    assert!(connected_peers(&keyless).is_empty());
    assert_eq!(
        other
            .redis()
            .get::<_, Option<String>>("session:1")
            .ok()
            .flatten(),
        None
    );
    assert_eq!(
        keyless
            .redis()
            .get::<_, Option<String>>("session:1")
            .ok()
            .flatten(),
        None
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_without_the_key_gets_not_one_byte_from_the_peer_port() {
    let dir = temp_dir("peer-raw");
    let key = write_key(&dir, "key", "cluster-one-key-0123456789abcdef");
    let mut node = Node::new(0);
    node.start(&[node.peer_address()], &["--peer-key-file", &key]);
    node.wait_ready(Duration::from_secs(60));
    let _: () = node.redis().set("session:secret", "token").unwrap();
    // A snapshot request, framed as the peer protocol frames it, without the key exchange.
    let mut frame = bytes::BytesMut::new();
    store_node::replication::wire::encode_frame_into(
        &store_node::replication::wire::Message::SnapshotRequest,
        1 << 20,
        &mut frame,
    )
    .expect("frame");
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", node.peer)).expect("connect to the peer port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&frame).expect("send");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert_eq!(received, Vec::<u8>::new(), "the peer port answered");
    assert!(eventually(Duration::from_secs(10), || refusals(
        &node, "key"
    ) == 1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// TLS flags for a node whose certificate is `<name>.crt` in `dir`.
fn tls_flags(dir: &Path, name: &str) -> Vec<String> {
    vec![
        // t-0 takes writes while the peers it lists are not started yet.
        "--write-ack".into(),
        "none".into(),
        "--tls-replication".into(),
        "yes".into(),
        "--tls-cert-file".into(),
        dir.join(format!("{name}.crt")).display().to_string(),
        "--tls-key-file".into(),
        dir.join(format!("{name}.key")).display().to_string(),
        "--tls-ca-cert-file".into(),
        dir.join("ca.crt").display().to_string(),
    ]
}

#[test]
fn a_cluster_with_mutual_tls_bootstraps_and_replicates_and_refuses_strangers() {
    let dir = temp_dir("peer-tls");
    let ca = Ca::new("cluster CA");
    std::fs::write(dir.join("ca.crt"), &ca.pem).unwrap();
    for index in 0..3u64 {
        let issued = ca.node(100 + index);
        std::fs::write(dir.join(format!("t-{index}.crt")), issued.cert_pem).unwrap();
        std::fs::write(dir.join(format!("t-{index}.key")), issued.key_pem).unwrap();
    }
    let stranger = Ca::new("another cluster's CA").node(7);
    std::fs::write(dir.join("stranger.crt"), stranger.cert_pem).unwrap();
    std::fs::write(dir.join("stranger.key"), stranger.key_pem).unwrap();

    let mut nodes: Vec<Node> = (0..3).map(Node::new).collect();
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    let flags: Vec<Vec<String>> = (0..3)
        .map(|index| tls_flags(&dir, &format!("t-{index}")))
        .collect();
    let args = |index: usize| flags[index].iter().map(String::as_str).collect::<Vec<_>>();
    // t-0 seeds the cluster and takes writes before the others exist.
    nodes[0].start(&peers, &args(0));
    nodes[0].wait_ready(Duration::from_secs(60));
    {
        let mut connection = nodes[0].redis();
        for index in 0..200 {
            let _: () = connection
                .set_ex(format!("session:{index}"), format!("user-{index}"), 3600)
                .unwrap();
        }
    }
    // t-1 and t-2 start empty: they bootstrap a snapshot over mutual TLS.
    nodes[1].start(&peers, &args(1));
    nodes[2].start(&peers, &args(2));
    nodes[1].wait_ready(Duration::from_secs(60));
    nodes[2].wait_ready(Duration::from_secs(60));
    let value: Option<String> = nodes[2].redis().get("session:199").unwrap();
    assert_eq!(value.as_deref(), Some("user-199"), "bootstrapped over TLS");
    let _: () = nodes[2].redis().set("session:new", "from t-2").unwrap();
    assert!(
        eventually(Duration::from_secs(30), || nodes[0]
            .redis()
            .get::<_, Option<String>>("session:new")
            .ok()
            .flatten()
            .as_deref()
            == Some("from t-2")),
        "t-2's write did not reach t-0"
    );
    assert!(eventually(Duration::from_secs(30), || connected_peers(
        &nodes[0]
    )
    .len()
        == 2));

    // A node whose certificate another CA signed, and a node without TLS.
    let stranger_flags = tls_flags(&dir, "stranger");
    let mut intruder = Node::new(3);
    intruder.start(
        &[nodes[0].peer_address()],
        &stranger_flags
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        eventually(Duration::from_secs(30), || refusals(&nodes[0], "tls") >= 1),
        "a certificate of another CA was not refused"
    );
    let before = refusals(&nodes[0], "tls");
    let mut plain = Node::new(4);
    plain.start(&[nodes[0].peer_address()], &[]);
    assert!(
        eventually(Duration::from_secs(30), || refusals(&nodes[0], "tls")
            > before),
        "a node without TLS was not refused"
    );
    assert_eq!(connected_peers(&nodes[0]).len(), 2);
    assert!(connected_peers(&intruder).is_empty());
    assert!(connected_peers(&plain).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
