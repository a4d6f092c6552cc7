//! Multi-process: INFO of a replicated node says `loading:1` while it bootstraps and
//! `loading:0` once ready (ioredis waits for it), with the replication state and its peers in
//! `# Replication`.

mod cluster_support;

use std::time::Duration;

use cluster_support::{eventually, nodes};

/// `field:value` lines of one INFO section.
fn info(node: &cluster_support::Node, section: &str) -> Vec<(String, String)> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut node.redis())
        .expect("INFO");
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(field, value)| (field.to_string(), value.to_string()))
        .collect()
}

fn field(lines: &[(String, String)], name: &str) -> Option<String> {
    lines
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.clone())
}

#[test]
fn info_reports_loading_until_the_node_is_synced() {
    let (mut all, peers) = nodes(2);
    // Ordinal 1 alone never seeds an empty cluster: it stays loading until t-0 is ready.
    all[1].start(&peers, &[]);
    assert!(
        eventually(Duration::from_secs(30), || all[1]
            .http_get("/readyz")
            .is_some()),
        "t-1 does not serve HTTP"
    );
    let persistence = info(&all[1], "persistence");
    assert_eq!(field(&persistence, "loading").as_deref(), Some("1"));
    let replication = info(&all[1], "replication");
    assert_eq!(field(&replication, "role").as_deref(), Some("master"));
    assert_eq!(
        field(&replication, "sessionstore_replication_state").as_deref(),
        Some("loading")
    );
    assert_eq!(
        field(&replication, "sessionstore_peers_discovered").as_deref(),
        Some("1")
    );
    assert_eq!(
        field(&replication, "sessionstore_peers_connected").as_deref(),
        Some("0")
    );

    all[0].start(&peers, &[]);
    all[0].wait_ready(Duration::from_secs(60));
    all[1].wait_ready(Duration::from_secs(60));
    assert_eq!(
        field(&info(&all[1], "persistence"), "loading").as_deref(),
        Some("0")
    );
    // Links come up within the reconnect backoff; the other counters only grow.
    assert!(
        eventually(Duration::from_secs(30), || {
            let replication = info(&all[1], "replication");
            field(&replication, "sessionstore_peers_connected").as_deref() == Some("1")
        }),
        "t-1 never connected to t-0"
    );
    let replication = info(&all[1], "replication");
    assert_eq!(
        field(&replication, "sessionstore_replication_state").as_deref(),
        Some("ready")
    );
    assert_eq!(
        field(&replication, "sessionstore_peers_discovered").as_deref(),
        Some("1")
    );
    assert!(replication
        .iter()
        .all(|(field, _)| field == "role" || field.starts_with("sessionstore_")));
}
