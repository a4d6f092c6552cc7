//! A peer that stops reading, and a peer that breaks the request rules: two real ram nodes
//! with `--write-ack one` and, in their `--peers`, a fake peer played by this test. The fake
//! speaks the peer protocol (`store_node::replication::wire`): it answers each node's hello,
//! then sends heartbeats forever and never reads again, so each node's link to it stays up
//! while nothing it sends is consumed.
//!
//! Promises checked:
//! - its queue stays bounded: the nodes' outboxes never hold more than their bounds (8 bulk
//!   frames and 64 requests per link) and their op-logs stay within their bounds, while the
//!   nodes take writes for 10 s;
//! - the others are unaffected: the writes on both real nodes are acknowledged (by the other
//!   real node) and every acknowledged write is on both;
//! - a peer that sends a second digest while the first is outstanding gets its link closed,
//!   and the node counts it (`requests_refused`).

mod fault_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::{check_every_node, eventually, metric, Figures, Node, TempDir, Workload};
use store_node::replication::wire::{
    encode_frame, Hello, Message, NodeState, DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
};

fn frame(message: &Message) -> Vec<u8> {
    encode_frame(message, DEFAULT_MAX_FRAME)
        .expect("encodes")
        .to_vec()
}

fn hello(name: &str) -> Message {
    Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster: "d".into(),
        node_name: name.into(),
        node_id: 0x5eed_0009,
        advertise: "127.0.0.1:9".into(),
        // Loading and empty: the real nodes neither bootstrap from it nor wait for it.
        state: NodeState::Loading,
        has_data: false,
    })
}

fn heartbeat() -> Message {
    Message::Heartbeat {
        state: NodeState::Loading,
        head: 0,
        wall_ms: store_node::store::unix_ms(),
        echo_ms: 0,
        memory_alarm: false,
    }
}

/// Reads one whole frame's bytes (header and body) from `stream`.
fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// The fake peer: accepts the nodes' links, answers their hellos, then only sends heartbeats.
fn serve_fake_peer(listener: TcpListener, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).expect("nonblocking");
    let mut links: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            // The dialer's hello, then ours; nothing is read after that.
            if read_frame(&mut stream).is_ok() && stream.write_all(&frame(&hello("d-9"))).is_ok() {
                links.push(stream);
            }
        }
        links.retain_mut(|stream| stream.write_all(&frame(&heartbeat())).is_ok());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_peer_that_stops_reading_stays_bounded_and_affects_no_other() {
    let fake = TcpListener::bind("127.0.0.1:0").expect("bind the fake peer");
    let fake_address = fake.local_addr().expect("address").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let fake_peer = {
        let stop = stop.clone();
        std::thread::spawn(move || serve_fake_peer(fake, stop))
    };
    let dirs: Vec<TempDir> = (0..2)
        .map(|index| TempDir::new(&format!("slow-peer-{index}")))
        .collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| Node::new(index, &dir.0))
        .collect();
    let mut peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    peers.push(fake_address);
    for node in nodes.iter_mut() {
        node.start(&peers, &["--write-ack", "one"]);
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(60));
    }

    // 16 KiB values: enough to fill the socket buffers to the silent peer within seconds.
    let workload = Workload::start_sized("slow-peer", &nodes, 100_000, 16 * 1024);
    let started = Instant::now();
    let (mut outbox_peak, mut log_peak) = (0.0f64, 0.0f64);
    while started.elapsed() < Duration::from_secs(10) {
        for node in &nodes {
            outbox_peak = outbox_peak.max(metric(node, "store_node_replication_outbox_messages"));
            log_peak = log_peak.max(metric(node, "store_node_replication_log_items"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let history = workload.finish();
    let ended = Instant::now();
    let all: Vec<&Node> = nodes.iter().collect();
    let (_, lost) = check_every_node(&all, &history.acknowledged, Duration::from_secs(30));
    let connected_to_fake = nodes
        .iter()
        .filter(|node| {
            fault_support::status(node)["peers"]
                .as_array()
                .is_some_and(|peers| {
                    peers
                        .iter()
                        .any(|peer| peer["name"] == "d-9" && peer["connected"] == true)
                })
        })
        .count();

    // A second digest while the first is outstanding closes the link.
    let mut rude = TcpStream::connect(nodes[0].peer_address()).expect("dial d-0");
    rude.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    rude.write_all(&frame(&hello("d-8"))).expect("hello");
    read_frame(&mut rude).expect("d-0's hello");
    let digest = Message::Digest {
        buckets: vec![0; 256],
    };
    let mut twice = frame(&digest);
    twice.extend(frame(&digest));
    rude.write_all(&twice).expect("two digests");
    let closed = eventually(Duration::from_secs(10), || {
        let mut chunk = [0u8; 65536];
        matches!(rude.read(&mut chunk), Ok(0) | Err(_))
    });
    let refused = metric(&nodes[0], "store_node_replication_requests_refused_total");
    stop.store(true, Ordering::Relaxed);
    let _ = fake_peer.join();

    Figures {
        scenario: "a peer that stops reading (and one sending two digests at once)",
        history: &history,
        lost: &lost,
        converged_in: ended.elapsed(),
        extra: format!(
            "outbox messages peaked at {outbox_peak} (bound 2 links x 72), op-log items peaked at {log_peak}; nodes still linked to the silent peer {connected_to_fake}; second digest closed the link {closed}, requests refused {refused}"
        ),
    }
    .print();
    assert!(
        history.acknowledged.len() > 100,
        "writes were not acknowledged"
    );
    assert_eq!(lost, vec![0; 2], "acknowledged writes lost");
    assert!(
        outbox_peak <= 144.0,
        "outboxes grew to {outbox_peak} messages"
    );
    assert!(
        outbox_peak >= 8.0,
        "the outboxes never filled ({outbox_peak}): the silent peer was never behind"
    );
    assert!(closed, "d-0 kept a link that sent two digests at once");
    assert_eq!(refused, 1.0);
}
