//! A 3-node disc cluster stopped completely (SIGTERM to every node) and started again serves
//! every session it had, from each node (issue 4).

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
