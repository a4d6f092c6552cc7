//! A 3-node disc cluster stopped completely (SIGTERM to every node) and started again serves
//! every session it had, from each node.

mod disc_support;

use std::time::Duration;

use disc_support::{Node, TempDir};

#[test]
fn a_disc_cluster_restarted_completely_serves_every_session() {
    let dirs: Vec<TempDir> = (0..3)
        .map(|index| TempDir::new(&format!("cluster-{index}")))
        .collect();
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
    // Sessions written to every node, with a TTL and as hashes.
    for (index, node) in nodes.iter().enumerate() {
        let mut connection = node.redis();
        for session in 0..100 {
            let key = format!("session:{index}:{session}");
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg("user")
                .arg(format!("u{session}"))
                .query(&mut connection)
                .expect("HSET");
            let _: () = redis::cmd("EXPIRE")
                .arg(&key)
                .arg(600)
                .query(&mut connection)
                .expect("EXPIRE");
        }
    }
    for node in nodes.iter_mut() {
        assert!(
            node.terminate(Duration::from_secs(15)),
            "{} exits cleanly",
            node.name
        );
    }
    for node in nodes.iter_mut() {
        node.start_disc(&peers, "everysec");
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
    }
    for node in &nodes {
        let mut connection = node.redis();
        for index in 0..3 {
            for session in 0..100 {
                let key = format!("session:{index}:{session}");
                let user: Option<String> = redis::cmd("HGET")
                    .arg(&key)
                    .arg("user")
                    .query(&mut connection)
                    .expect("HGET");
                assert_eq!(user, Some(format!("u{session}")), "{key} on {}", node.name);
                let ttl: i64 = redis::cmd("TTL")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("TTL");
                assert!(ttl > 500 && ttl <= 600, "{key} TTL {ttl} on {}", node.name);
            }
        }
    }
}

fn flip_byte_in_the_oldest_segment(dir: &std::path::Path) -> String {
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("wal-"))
        })
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    let oldest = &segments[0];
    let mut bytes = std::fs::read(oldest).expect("segment");
    assert!(bytes.len() > 200, "{} holds records", oldest.display());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(oldest, &bytes).expect("write");
    oldest
        .file_name()
        .and_then(|name| name.to_str())
        .expect("name")
        .to_string()
}

#[test]
fn a_damaged_node_refuses_alone_and_quarantines_and_resyncs_when_a_peer_answers() {
    let dirs: Vec<TempDir> = (0..2)
        .map(|index| TempDir::new(&format!("quarantine-{index}")))
        .collect();
    let mut nodes: Vec<Node> = dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| Node::new(index, &dir.0))
        .collect();
    let peers: Vec<String> = nodes.iter().map(Node::peer_address).collect();
    for node in nodes.iter_mut() {
        node.start_disc(&peers, "always");
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
    }
    let mut connection = nodes[1].redis();
    for session in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("session:{session}"))
            .arg(format!("value:{session}"))
            .query(&mut connection)
            .expect("SET");
    }
    drop(connection);
    // Two clean restarts leave the records in an older segment, whose damage is not a torn
    // tail but corruption.
    assert!(nodes[1].terminate(Duration::from_secs(15)));
    nodes[1].start_disc(&peers, "always");
    nodes[1].wait_ready(Duration::from_secs(30));
    assert!(nodes[1].terminate(Duration::from_secs(15)));
    let damaged = flip_byte_in_the_oldest_segment(&dirs[1].0);

    // Alone (its peer stopped too): refuses, naming the file.
    assert!(nodes[0].terminate(Duration::from_secs(15)));
    nodes[1].start_disc(&peers, "always");
    let status = nodes[1]
        .wait_exit(Duration::from_secs(30))
        .expect("the lone damaged node exits");
    assert!(!status.success());
    let log = nodes[1].log();
    assert!(
        log.lines()
            .any(|line| line.contains("refusing to serve") && line.contains(&damaged)),
        "no refusal naming {damaged}:\n{log}"
    );

    // With a reachable peer: files moved aside, the node re-syncs and serves every session.
    nodes[0].start_disc(&peers, "always");
    nodes[0].wait_ready(Duration::from_secs(30));
    nodes[1].start_disc(&peers, "always");
    nodes[1].wait_ready(Duration::from_secs(30));
    let quarantined = std::fs::read_dir(&dirs[1].0)
        .expect("data dir")
        .filter_map(|entry| entry.ok())
        .any(|entry| entry.file_name().to_string_lossy().starts_with("damaged-"));
    assert!(quarantined, "no damaged-* directory");
    let mut connection = nodes[1].redis();
    for session in 0..50 {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("session:{session}"))
            .query(&mut connection)
            .expect("GET");
        assert_eq!(value, Some(format!("value:{session}")), "session:{session}");
    }
}
