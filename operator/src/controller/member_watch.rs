//! Polling the nodes between reconciles, so the status follows them within seconds without a
//! reconcile (and its API reads) every few seconds. Each reconcile records the addresses of a
//! cluster's ready nodes and a fingerprint of what they reported (state, memory alarm, nearness
//! to the high watermark, peers, process id); a background task polls each cluster's nodes
//! again, every [`ControllerConfig::member_poll_fast`] while anything is changing (a pod not
//! ready, a rollout, a node in alarm or within 10% of its high watermark) and every
//! [`ControllerConfig::member_poll_slow`] otherwise, and triggers a reconcile of the cluster as
//! soon as the fingerprint differs. Only `GET /v1/status` of the pods: no API server traffic.
//!
//! [`ControllerConfig::member_poll_fast`]: super::ControllerConfig::member_poll_fast
//! [`ControllerConfig::member_poll_slow`]: super::ControllerConfig::member_poll_slow

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use sessionstore_api::node_status::NodeStatus;
use sessionstore_api::SessionCluster;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::node_client::{NodeAddress, NodeApi};

/// A node counts as near its high watermark from this fraction of it on.
const NEAR_HIGH_WATERMARK: f64 = 0.9;

/// What the watch keeps of one cluster.
struct Watched {
    reference: ObjectRef<SessionCluster>,
    addresses: Vec<NodeAddress>,
    fingerprint: String,
    fast: bool,
    next: Instant,
}

/// A controller's channel of reconciles to trigger, with the namespace it watches (`None`: all).
type Subscriber = (
    Option<String>,
    mpsc::UnboundedSender<ObjectRef<SessionCluster>>,
);

/// The nodes' fingerprints and the channels that trigger reconciles.
pub struct MemberWatch {
    fast: Duration,
    slow: Duration,
    clusters: Mutex<HashMap<String, Watched>>,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// Whether a node uses at least 90% of its high watermark: it may cross it before the next
/// slow poll.
pub fn near_high_watermark(node: &NodeStatus) -> bool {
    let high = node.memory.high_watermark_bytes;
    node.memory.alarm
        || (high > 0 && node.memory.used_bytes as f64 >= high as f64 * NEAR_HIGH_WATERMARK)
}

/// What of the nodes' reports the status depends on, in a comparable form: each node's name,
/// process, state, alarm, nearness to its high watermark, data origin and connected peers.
pub fn fingerprint(nodes: &[NodeStatus]) -> String {
    let mut lines: Vec<String> = nodes
        .iter()
        .map(|node| {
            let mut peers: Vec<&str> = node
                .peers
                .iter()
                .filter(|peer| peer.connected)
                .map(|peer| peer.name.as_str())
                .collect();
            peers.sort_unstable();
            let mut line = String::new();
            let _ = write!(
                line,
                "{} {} {} alarm={} near={} origin={:?} peers={}",
                node.node_name,
                node.node_id,
                node.state,
                node.memory.alarm,
                near_high_watermark(node),
                node.data_origin,
                peers.join(",")
            );
            line
        })
        .collect();
    lines.sort_unstable();
    lines.join("\n")
}

impl MemberWatch {
    /// A watch polling every `fast` while a cluster changes, every `slow` otherwise.
    pub fn new(fast: Duration, slow: Duration) -> Self {
        Self {
            fast,
            slow,
            clusters: Mutex::default(),
            subscribers: Mutex::default(),
        }
    }

    /// The reconciles to trigger for clusters in `namespace` (all when `None`).
    pub fn subscribe(
        &self,
        namespace: Option<String>,
    ) -> mpsc::UnboundedReceiver<ObjectRef<SessionCluster>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push((namespace, sender));
        }
        receiver
    }

    /// What a reconcile of `cluster` found: its nodes' `addresses`, what the answering ones
    /// reported, and whether something is changing (poll fast).
    pub fn record(
        &self,
        cluster: &SessionCluster,
        addresses: Vec<NodeAddress>,
        nodes: &[NodeStatus],
        fast: bool,
    ) {
        let Some(namespace) = cluster.namespace() else {
            return;
        };
        let fast = fast || nodes.iter().any(near_high_watermark);
        let interval = if fast { self.fast } else { self.slow };
        if let Ok(mut clusters) = self.clusters.lock() {
            clusters.insert(
                format!("{namespace}/{}", cluster.name_any()),
                Watched {
                    reference: ObjectRef::from_obj(cluster),
                    addresses,
                    fingerprint: fingerprint(nodes),
                    fast,
                    next: Instant::now() + interval,
                },
            );
        }
    }

    /// Stops watching a deleted cluster (`namespace/name`).
    pub fn forget(&self, key: &str) {
        if let Ok(mut clusters) = self.clusters.lock() {
            clusters.remove(key);
        }
    }

    /// Whether the watch polls `namespace/name` fast, if it watches it.
    pub fn is_fast(&self, key: &str) -> Option<bool> {
        self.clusters.lock().ok()?.get(key).map(|w| w.fast)
    }

    /// Polls every cluster that is due and triggers a reconcile of those whose nodes changed.
    /// Returns how many were triggered.
    pub async fn poll_due(&self, node_api: &dyn NodeApi) -> usize {
        let now = Instant::now();
        let due: Vec<(String, Vec<NodeAddress>)> = match self.clusters.lock() {
            Ok(mut clusters) => clusters
                .iter_mut()
                .filter(|(_, watched)| watched.next <= now)
                .map(|(key, watched)| {
                    watched.next = now + if watched.fast { self.fast } else { self.slow };
                    (key.clone(), watched.addresses.clone())
                })
                .collect(),
            Err(_) => return 0,
        };
        let mut triggered = 0;
        for (key, addresses) in due {
            let calls = addresses
                .into_iter()
                .map(|address| node_api.status(address));
            let nodes: Vec<NodeStatus> = futures::future::join_all(calls)
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect();
            let seen = fingerprint(&nodes);
            let changed = match self.clusters.lock() {
                Ok(mut clusters) => clusters.get_mut(&key).and_then(|watched| {
                    (watched.fingerprint != seen).then(|| {
                        watched.fingerprint = seen;
                        watched.reference.clone()
                    })
                }),
                Err(_) => None,
            };
            if let Some(reference) = changed {
                tracing::debug!(cluster = %key, "nodes changed; reconciling");
                self.trigger(reference);
                triggered += 1;
            }
        }
        triggered
    }

    fn trigger(&self, reference: ObjectRef<SessionCluster>) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.retain(|(namespace, sender)| {
                if namespace.is_some() && *namespace != reference.namespace {
                    return true;
                }
                sender.send(reference.clone()).is_ok()
            });
        }
    }

    /// Polls until `shutdown` completes.
    pub async fn run(
        &self,
        node_api: &dyn NodeApi,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {
                    self.poll_due(node_api).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sessionstore_api::node_status::{MemoryReport, PeerReport};

    use super::*;

    fn node(used: u64, alarm: bool) -> NodeStatus {
        NodeStatus {
            node_name: "demo-0".into(),
            node_id: "demo-0-1".into(),
            state: "ready".into(),
            memory: MemoryReport {
                used_bytes: used,
                limit_bytes: 1000,
                high_watermark_bytes: 800,
                alarm,
                ..MemoryReport::default()
            },
            peers: vec![PeerReport {
                name: "demo-1".into(),
                connected: true,
                ..PeerReport::default()
            }],
            ..NodeStatus::default()
        }
    }

    #[test]
    fn nodes_within_ten_percent_of_their_high_watermark_are_near_it() {
        assert!(!near_high_watermark(&node(719, false)));
        assert!(near_high_watermark(&node(720, false)));
        assert!(
            near_high_watermark(&node(10, true)),
            "in alarm until below low"
        );
    }

    #[test]
    fn the_fingerprint_ignores_memory_moves_but_not_an_alarm_or_a_new_process() {
        let base = fingerprint(&[node(100, false)]);
        assert_eq!(base, fingerprint(&[node(300, false)]));
        assert_ne!(base, fingerprint(&[node(750, false)]));
        assert_ne!(base, fingerprint(&[node(900, true)]));
        let restarted = NodeStatus {
            node_id: "demo-0-2".into(),
            ..node(100, false)
        };
        assert_ne!(base, fingerprint(&[restarted]));
        assert_ne!(base, fingerprint(&[]));
    }
}
