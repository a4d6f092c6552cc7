//! Multi-process: `/v1/status` says how each node got the data it started with, which is how
//! the operator tells a restart that kept the sessions from one that lost them. The first node
//! of a new cluster starts `empty`; a node restarted while a peer holds the keys copies them
//! (`peer`); when every node restarts at once, each starts `empty` again.

mod cluster_support;

use std::time::Duration;

use cluster_support::{nodes, start_all, Node};
use redis::Commands;
use sessionstore_api::node_status::{data_origin, NodeStatus};

const WITHIN: Duration = Duration::from_secs(60);

fn origin(node: &Node) -> (Option<String>, String) {
    let (status, body) = node.http_get("/v1/status").expect("/v1/status answers");
    assert_eq!(status, 200, "{}: {body}", node.name);
    let report: NodeStatus = serde_json::from_str(&body).expect("a NodeStatus document");
    (report.data_origin, report.node_id)
}

#[test]
fn nodes_report_whether_they_started_empty_or_copied_their_data() {
    let (mut two, peers) = nodes(2);
    start_all(&mut two, &peers, &[]);
    for node in &two {
        node.wait_ready(WITHIN);
    }
    let zero = origin(&two[0]);
    assert_eq!(zero.0.as_deref(), Some(data_origin::EMPTY), "the seed");
    let mut connection = two[0].redis();
    for index in 0..20 {
        let _: () = connection.set(format!("s{index}"), "v").expect("SET");
    }

    // t-1 restarts while t-0 holds the keys: it copies them.
    two[1].kill();
    two[1].start(&peers, &[]);
    two[1].wait_ready(WITHIN);
    let one = origin(&two[1]);
    assert_eq!(one.0.as_deref(), Some(data_origin::PEER));

    // Both restart at once: nobody had anything to give.
    for node in two.iter_mut() {
        node.kill();
    }
    start_all(&mut two, &peers, &[]);
    for node in &two {
        node.wait_ready(WITHIN);
    }
    for (node, before) in two.iter().zip([zero, one]) {
        let (after, id) = origin(node);
        assert_eq!(after.as_deref(), Some(data_origin::EMPTY), "{}", node.name);
        assert_ne!(id, before.1, "{} is a new process", node.name);
    }
    let value: Option<String> = two[0].redis().get("s0").expect("GET");
    assert_eq!(value, None, "the keys are gone, as the nodes say");
}
