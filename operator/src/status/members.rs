//! `status.members` from the nodes' `/v1/status`: who each node sees and misses, its memory, and
//! whether the members are all synced.

use sessionstore_api::node_status::{state, NodeStatus};
use sessionstore_api::{names, MemberStatus, SessionClusterStatus};

/// Pods of `members` that do not see some expected peer, with the peers they miss.
pub fn missing_peers(expected: &[String], member: &NodeStatus) -> Vec<String> {
    expected
        .iter()
        .filter(|pod| **pod != member.node_name)
        .filter(|pod| {
            !member
                .peers
                .iter()
                .any(|peer| peer.connected && &peer.name == *pod)
        })
        .cloned()
        .collect()
}

/// `used` as a whole percentage of `limit`; `None` for an unlimited node (limit 0).
pub fn percent(used: u64, limit: u64) -> Option<u64> {
    (limit > 0).then(|| (used.saturating_mul(100)) / limit)
}

/// One member per polled node, sorted by name; a node misses every pod of the first `desired`
/// ordinals it has no connected peer for.
pub fn from_nodes(name: &str, desired: i32, nodes: &[NodeStatus]) -> Vec<MemberStatus> {
    let expected: Vec<String> = (0..desired).map(|i| names::pod(name, i)).collect();
    let mut members: Vec<MemberStatus> = nodes
        .iter()
        .map(|node| MemberStatus {
            name: node.node_name.clone(),
            node_id: node.node_id.clone(),
            state: node.state.clone(),
            data_origin: node.data_origin.clone(),
            keys: node.keys,
            peers: node
                .peers
                .iter()
                .filter(|p| p.connected)
                .map(|p| p.name.clone())
                .collect(),
            missing_peers: missing_peers(&expected, node),
            max_lag_ops: node.peers.iter().map(|p| p.lag_ops).max().unwrap_or(0),
            memory_used_bytes: node.memory.used_bytes,
            memory_limit_bytes: node.memory.limit_bytes,
            memory_alarm: node.memory.alarm,
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members
}

/// The `Memory` column of `kubectl get`: the highest member's use in percent of its limit.
pub fn memory_column(members: &[MemberStatus]) -> Option<String> {
    members
        .iter()
        .filter_map(|m| percent(m.memory_used_bytes, m.memory_limit_bytes))
        .max()
        .map(|p| format!("{p}%"))
}

/// Whether every node the spec asks for reported its status, is `ready` and sees every other
/// node. Until then the controller polls again soon: a restarted pod is ready within seconds,
/// and its peers reconnect to it a few seconds later.
pub fn members_synced(status: &SessionClusterStatus, desired: i32) -> bool {
    usize::try_from(desired).is_ok_and(|desired| status.members.len() == desired)
        && status
            .members
            .iter()
            .all(|m| m.state == state::READY && m.missing_peers.is_empty())
}

#[cfg(test)]
mod tests {
    use sessionstore_api::node_status::{MemoryReport, PeerReport};

    use super::*;

    fn node(name: &str, peers: &[(&str, bool, u64)]) -> NodeStatus {
        NodeStatus {
            node_name: name.into(),
            state: state::READY.into(),
            keys: 7,
            memory: MemoryReport {
                used_bytes: 25,
                limit_bytes: 200,
                alarm: false,
                ..MemoryReport::default()
            },
            peers: peers
                .iter()
                .map(|(peer, connected, lag_ops)| PeerReport {
                    name: (*peer).into(),
                    connected: *connected,
                    lag_ops: *lag_ops,
                    ..PeerReport::default()
                })
                .collect(),
            ..NodeStatus::default()
        }
    }

    #[test]
    fn members_are_sorted_and_list_only_connected_peers_and_the_largest_lag() {
        let members = from_nodes(
            "demo",
            3,
            &[
                node("demo-1", &[("demo-0", true, 4), ("demo-2", false, 9)]),
                node("demo-0", &[("demo-1", true, 0), ("demo-2", true, 2)]),
            ],
        );
        assert_eq!(
            members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["demo-0", "demo-1"]
        );
        assert_eq!(members[1].peers, ["demo-0"]);
        assert_eq!(members[1].missing_peers, ["demo-2"]);
        assert_eq!(members[1].max_lag_ops, 9);
        assert_eq!(members[0].missing_peers, Vec::<String>::new());
        assert_eq!(
            (
                members[0].keys,
                members[0].memory_used_bytes,
                members[0].memory_limit_bytes
            ),
            (7, 25, 200)
        );
        assert_eq!(memory_column(&members).as_deref(), Some("12%"));
    }

    #[test]
    fn an_unlimited_node_has_no_percentage() {
        assert_eq!(percent(90, 100), Some(90));
        assert_eq!(percent(5, 0), None);
        assert_eq!(memory_column(&[]), None);
    }
}
