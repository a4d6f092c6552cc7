//! Multi-process, three disc nodes: a PUBLISH on node 0 reaches a subscriber of every node
//! exactly once (its reply counts node 0's own subscribers); a Lua script's writes appear on
//! every node and are still there after the whole cluster restarts from disc (the log holds
//! the records the script wrote, never the script, and the script cache starts empty).

mod disc_support;

use std::time::{Duration, Instant};

use disc_support::{Node, TempDir};

fn start_cluster(dirs: &[TempDir]) -> (Vec<Node>, Vec<String>) {
    let mut nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| Node::new(index, &dir.0))
        .collect();
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    for node in nodes.iter_mut() {
        node.start_disc(&peers, "everysec");
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
    }
    (nodes, peers)
}

/// The payloads of the messages `connection` receives on `channel` within `within`.
fn messages(pubsub: &mut redis::PubSub<'_>, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        pubsub
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match pubsub.get_message() {
            Ok(message) => got.push(message.get_payload::<String>().expect("payload")),
            Err(_) => break,
        }
    }
    got
}

#[test]
fn a_publish_reaches_every_node_once_and_script_writes_survive_a_restart() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|index| TempDir::new(&format!("pubsub-{index}")))
        .collect();
    let (mut nodes, peers) = start_cluster(&dirs);

    let mut connections: Vec<redis::Connection> = nodes.iter().map(Node::redis).collect();
    let mut subscribers: Vec<redis::PubSub<'_>> = connections
        .iter_mut()
        .map(|connection| {
            let mut pubsub = connection.as_pubsub();
            pubsub.subscribe("events").expect("SUBSCRIBE");
            pubsub
        })
        .collect();
    let mut publisher = nodes[0].redis();
    // The links carry publications once they are up: warm up until every node got one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warmed = [false; 3];
    while !warmed.iter().all(|&warm| warm) {
        assert!(
            Instant::now() < deadline,
            "publications never reached {warmed:?}"
        );
        let _: i64 = redis::cmd("PUBLISH")
            .arg("events")
            .arg("warm-up")
            .query(&mut publisher)
            .expect("PUBLISH");
        for (index, subscriber) in subscribers.iter_mut().enumerate() {
            if !messages(subscriber, Duration::from_millis(200)).is_empty() {
                warmed[index] = true;
            }
        }
    }
    // Let the last warm-ups drain.
    for subscriber in subscribers.iter_mut() {
        messages(subscriber, Duration::from_millis(500));
    }
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg("events")
        .arg("the-one")
        .query(&mut publisher)
        .expect("PUBLISH");
    assert_eq!(receivers, 1, "the reply counts node 0's subscribers");
    for (index, subscriber) in subscribers.iter_mut().enumerate() {
        let got = messages(subscriber, Duration::from_secs(2));
        assert_eq!(
            got.iter().filter(|payload| *payload == "the-one").count(),
            1,
            "node {index} got {got:?}"
        );
    }
    drop(subscribers);
    drop(connections);

    // A script's writes replicate as records.
    let mut connection = nodes[0].redis();
    let reply: String = redis::cmd("EVAL")
        .arg(
            "redis.call('set', KEYS[1], ARGV[1]); redis.call('hset', KEYS[2], 'f', ARGV[1]); \
             return redis.call('get', KEYS[1])",
        )
        .arg(2)
        .arg("script:s")
        .arg("script:h")
        .arg("written")
        .query(&mut connection)
        .expect("EVAL");
    assert_eq!(reply, "written");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query(&mut connection)
        .expect("SCRIPT LOAD");
    let holds_writes = |node: &Node| {
        let mut connection = node.redis();
        let value: Option<String> = redis::cmd("GET")
            .arg("script:s")
            .query(&mut connection)
            .expect("GET");
        let field: Option<String> = redis::cmd("HGET")
            .arg("script:h")
            .arg("f")
            .query(&mut connection)
            .expect("HGET");
        value.as_deref() == Some("written") && field.as_deref() == Some("written")
    };
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !holds_writes(node) {
            assert!(
                Instant::now() < deadline,
                "{} lacks the script's writes",
                node.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    for node in nodes.iter_mut() {
        assert!(
            node.terminate(Duration::from_secs(15)),
            "{} exits",
            node.name
        );
    }
    for node in nodes.iter_mut() {
        node.start_disc(&peers, "everysec");
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
        assert!(holds_writes(node), "{} after the restart", node.name);
        let mut connection = node.redis();
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(&mut connection)
            .expect("SCRIPT EXISTS");
        assert_eq!(exists, vec![0], "the script cache starts empty");
    }
}
