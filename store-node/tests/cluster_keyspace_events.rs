//! Multi-process, three RAM nodes started with `--notify-keyspace-events KEA`: each node
//! publishes the events of the changes it applies, local or replicated, to its own
//! subscribers. A write on node 0 gives one event to a subscriber of every node (node 0 the
//! command's own, the others the event the replicated record amounts to), and a key expiring
//! gives exactly one `expired` to a subscriber of each node, since every node expires it by the
//! same deadline.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{nodes, start_all};

/// Reads `(event, key)` pairs from a `__keyevent@0__:*` subscriber until `until` was read
/// (included) or `within` passed.
fn events_until(
    pubsub: &mut redis::PubSub<'_>,
    until: (&str, &str),
    within: Duration,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        pubsub
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok(message) = pubsub.get_message() else {
            break;
        };
        let channel = message.get_channel_name().to_string();
        let event = channel
            .strip_prefix("__keyevent@0__:")
            .unwrap_or(&channel)
            .to_string();
        let key: String = message.get_payload().expect("payload");
        let done = (event.as_str(), key.as_str()) == until;
        got.push((event, key));
        if done {
            break;
        }
    }
    got
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(event, key)| (event.to_string(), key.to_string()))
        .collect()
}

#[test]
fn every_node_announces_each_change_once_to_its_own_subscribers() {
    let (mut nodes, peers) = nodes(3);
    start_all(&mut nodes, &peers, &["--notify-keyspace-events", "KEA"]);
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
    }
    let mut connections: Vec<redis::Connection> = nodes.iter().map(|node| node.redis()).collect();
    let mut writer = nodes[0].redis();
    let mut subscribers: Vec<redis::PubSub<'_>> = connections
        .iter_mut()
        .map(|connection| {
            let mut pubsub = connection.as_pubsub();
            pubsub.psubscribe("__keyevent@0__:*").expect("PSUBSCRIBE");
            pubsub
        })
        .collect();

    // Long enough for the record to reach the peers first; each node then expires it itself.
    let _: () = redis::cmd("SET")
        .arg("session")
        .arg("v")
        .arg("PX")
        .arg(3_000)
        .query(&mut writer)
        .expect("SET");
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("1")
        .arg("g")
        .arg("2")
        .query(&mut writer)
        .expect("HSET");
    let _: () = redis::cmd("HDEL")
        .arg("h")
        .arg("f")
        .query(&mut writer)
        .expect("HDEL");
    let _: () = redis::cmd("DEL").arg("h").query(&mut writer).expect("DEL");
    let within = Duration::from_secs(20);
    for (index, subscriber) in subscribers.iter_mut().enumerate() {
        let expected: &[(&str, &str)] = if index == 0 {
            &[
                ("set", "session"),
                ("expire", "session"),
                ("hset", "h"),
                ("hdel", "h"),
                ("del", "h"),
                ("expired", "session"),
            ]
        } else {
            &[
                ("set", "session"),
                ("hset", "h"),
                ("hdel", "h"),
                ("del", "h"),
                ("expired", "session"),
            ]
        };
        assert_eq!(
            events_until(subscriber, ("expired", "session"), within),
            pairs(expected),
            "node {index}"
        );
    }
    // Nothing more about these keys: a later write is the next event everywhere (a second
    // `expired`, or an event repeated by anti-entropy, would come first).
    let _: () = redis::cmd("SET")
        .arg("end")
        .arg("1")
        .query(&mut writer)
        .expect("SET");
    for (index, subscriber) in subscribers.iter_mut().enumerate() {
        assert_eq!(
            events_until(subscriber, ("set", "end"), within),
            pairs(&[("set", "end")]),
            "node {index}"
        );
    }
}
