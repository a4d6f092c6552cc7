//! Helpers of the in-process replication tests: nodes are `Replication` engines over
//! `MemoryReplica`s on the partitionable in-memory network (or TCP on 127.0.0.1), with a peer
//! list the test changes while they run, and bounded polling waits.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use store_node::replication::membership::MembershipError;
use store_node::replication::{
    InMemoryNetwork, MemoryReplica, NodeState, PeerResolver, Replication, ReplicationConfig,
};
use store_node::store::state::view;
use store_node::store::{Record, Value};

/// A peer list tests can change while nodes run (what DNS does in Kubernetes).
#[derive(Clone, Default)]
pub struct SharedPeers(Arc<Mutex<BTreeSet<String>>>);

impl SharedPeers {
    /// Replaces the listed addresses.
    pub fn set(&self, addresses: &[String]) {
        *self.0.lock() = addresses.iter().cloned().collect();
    }
}

impl PeerResolver for SharedPeers {
    fn resolve(&self) -> BoxFuture<'_, Result<BTreeSet<String>, MembershipError>> {
        Box::pin(async move { Ok(self.0.lock().clone()) })
    }

    fn has_sources(&self) -> bool {
        true
    }
}

/// An expiry no test reaches (Unix ms, year 2096).
pub const FAR_FUTURE: u64 = 4_000_000_000_000;

/// One in-process node: a replication engine over a `MemoryReplica`.
pub struct Node {
    /// The node name.
    pub name: String,
    /// Its store.
    pub replica: Arc<MemoryReplica>,
    /// Its replication handle.
    pub replication: Replication,
}

impl Node {
    /// Writes `key` locally and submits it; returns its log sequence.
    pub fn write(&self, key: &str, value: &str) -> u64 {
        let record = Record::live(
            Bytes::copy_from_slice(key.as_bytes()),
            self.replication.stamp(),
            Value::String(Bytes::copy_from_slice(value.as_bytes())),
            Some(FAR_FUTURE),
        );
        self.replica.put_local(record.clone());
        self.replication.submit(record)
    }

    /// Deletes `key` locally (a tombstone) and submits it; returns its log sequence.
    pub fn delete(&self, key: &str) -> u64 {
        let now = self.replication.clock().wall_ms();
        let record = Record::tombstone(
            Bytes::copy_from_slice(key.as_bytes()),
            self.replication.stamp(),
            now,
        );
        self.replica.put_local(record.clone());
        self.replication.submit(record)
    }

    /// The live string value of `key`, if any.
    pub fn value(&self, key: &str) -> Option<String> {
        let state = self.replica.get(key.as_bytes())?.state().ok()?;
        view::string_value(&state).map(|value| String::from_utf8_lossy(&value).into_owned())
    }

    /// The expiry of `key`'s live value, if any.
    pub fn expire_at(&self, key: &str) -> Option<u64> {
        let record = self.replica.get(key.as_bytes())?;
        (!record.is_tombstone())
            .then(|| record.expire_at())
            .flatten()
    }
}

/// A configuration with test-speed timers (50 ms heartbeats, 600 ms peer timeout).
pub fn fast_config(name: &str, listen: &str) -> ReplicationConfig {
    let mut config = ReplicationConfig::new(
        "test",
        name,
        store_node::replication::generate_node_id(),
        listen,
    );
    config.touch_flush_interval = Duration::from_millis(50);
    config.heartbeat_interval = Duration::from_millis(50);
    config.peer_timeout = Duration::from_millis(600);
    config.connect_timeout = Duration::from_millis(300);
    config.reconnect_max_backoff = Duration::from_millis(100);
    config.discovery_interval = Duration::from_millis(100);
    config.anti_entropy_interval = Duration::from_millis(500);
    config.tombstone_gc_interval = Duration::from_millis(100);
    config.first_start_wait = Duration::from_millis(300);
    config
}

/// The in-memory address of the node `name`.
pub fn address(name: &str) -> String {
    format!("{name}:7379")
}

/// Starts the node `name` on the in-memory network, resolving peers from `peers`.
pub async fn start_memory_node(
    network: &InMemoryNetwork,
    name: &str,
    peers: &SharedPeers,
    config: ReplicationConfig,
) -> Node {
    let replica = Arc::new(MemoryReplica::new());
    let replication = Replication::start(
        config,
        replica.clone(),
        Arc::new(network.transport(&address(name))),
        Arc::new(peers.clone()),
    )
    .await
    .expect("start node");
    Node {
        name: name.to_string(),
        replica,
        replication,
    }
}

/// Starts `count` nodes `node-0`.. on the in-memory network (each configuration adjusted by
/// `tweak`) and waits until all are ready.
pub async fn memory_cluster(
    network: &InMemoryNetwork,
    count: usize,
    tweak: impl Fn(&mut ReplicationConfig),
) -> (Vec<Node>, SharedPeers) {
    let peers = SharedPeers::default();
    let names: Vec<String> = (0..count).map(|index| format!("node-{index}")).collect();
    peers.set(&names.iter().map(|name| address(name)).collect::<Vec<_>>());
    let mut nodes = Vec::new();
    for name in &names {
        let mut config = fast_config(name, &address(name));
        tweak(&mut config);
        nodes.push(start_memory_node(network, name, &peers, config).await);
    }
    assert!(
        wait_until(Duration::from_secs(10), || nodes
            .iter()
            .all(|node| node.replication.state() == NodeState::Ready))
        .await,
        "cluster never became ready"
    );
    (nodes, peers)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns the last result.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// Whether every node holds the same keyspace (equal digests).
pub fn converged(nodes: &[&Node]) -> bool {
    let first = nodes[0].replica.digest();
    nodes.iter().all(|node| node.replica.digest() == first)
}

/// Shuts every node down.
pub fn shutdown(nodes: &[Node]) {
    for node in nodes {
        node.replication.shutdown();
    }
}
