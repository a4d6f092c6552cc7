//! Who the peers are and what a starting node does about them: peer discovery from a static
//! list and/or the headless Service name (re-resolved every few seconds with hickory, cache
//! cleared each time, because pods come and go faster than DNS TTLs), the node ordinal parsed
//! from `<statefulset>-<n>`, and the first-start rule ([`decide_start`]):
//!
//! - no peer source configured: a single-node cluster, ready at once;
//! - a node holding data catches up from the ready peers it reaches (anti-entropy); with none
//!   ready, once every discovered peer is connected (a whole cluster restarting from disc), from
//!   the loading peers that hold data too; after the bounded wait, from the reachable ones, or
//!   with none it serves what it has;
//! - an empty node bootstraps from a ready peer as soon as it sees one (the lowest ordinal);
//! - an empty node that sees no ready peer after the bounded wait seeds the cluster only if its
//!   ordinal is 0; any other ordinal keeps waiting and says why. When several empty nodes start
//!   together they see each other loading: ordinal 0 seeds after the wait and the others then
//!   bootstrap from it, so a first start never forms two clusters.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use hickory_resolver::TokioResolver;

use super::wire::NodeState;

/// Discovery failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The system resolver configuration could not be loaded.
    #[error("failed to build the DNS resolver: {0}")]
    Resolver(String),
    /// Resolving the headless Service failed (the previous peer list is kept).
    #[error("failed to resolve {name}: {reason}")]
    Resolve {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The ordinal of a StatefulSet pod name (`demo-2` → 2).
pub fn ordinal(node_name: &str) -> Option<u32> {
    let (_, suffix) = node_name.rsplit_once('-')?;
    if suffix.is_empty() || !suffix.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    suffix.parse().ok()
}

/// Produces the current set of peer addresses (`host:port`).
pub trait PeerResolver: Send + Sync + 'static {
    /// The peer addresses, possibly including this node (the engine drops it).
    fn resolve(&self) -> BoxFuture<'_, Result<BTreeSet<String>, MembershipError>>;
    /// Whether any peer source is configured at all (none = single-node cluster).
    fn has_sources(&self) -> bool;
}

/// Static peers plus, optionally, a headless Service name.
pub struct Discovery {
    static_peers: BTreeSet<String>,
    dns: Option<(String, u16, TokioResolver)>,
}

impl Discovery {
    /// Peers from `static_peers` (`host:port`) and from resolving `service_name` (every
    /// address with `peer_port`).
    pub fn new(
        static_peers: &[String],
        service_name: Option<&str>,
        peer_port: u16,
    ) -> Result<Discovery, MembershipError> {
        let dns = match service_name.filter(|name| !name.is_empty()) {
            Some(name) => {
                let resolver = TokioResolver::builder_tokio()
                    .and_then(|builder| builder.build())
                    .map_err(|error| MembershipError::Resolver(error.to_string()))?;
                Some((name.to_string(), peer_port, resolver))
            }
            None => None,
        };
        Ok(Discovery {
            static_peers: static_peers
                .iter()
                .map(|peer| peer.trim().to_string())
                .filter(|peer| !peer.is_empty())
                .collect(),
            dns,
        })
    }
}

impl PeerResolver for Discovery {
    fn resolve(&self) -> BoxFuture<'_, Result<BTreeSet<String>, MembershipError>> {
        Box::pin(async move {
            let mut peers = self.static_peers.clone();
            if let Some((name, port, resolver)) = &self.dns {
                // A cached answer would hide a pod that just started or stopped.
                resolver.clear_cache();
                let lookup = resolver.lookup_ip(name.as_str()).await.map_err(|error| {
                    MembershipError::Resolve {
                        name: name.clone(),
                        reason: error.to_string(),
                    }
                })?;
                peers.extend(
                    lookup
                        .iter()
                        .map(|ip| std::net::SocketAddr::new(ip, *port).to_string()),
                );
            }
            Ok(peers)
        })
    }

    fn has_sources(&self) -> bool {
        !self.static_peers.is_empty() || self.dns.is_some()
    }
}

/// A fixed peer list (tests).
#[derive(Debug, Clone, Default)]
pub struct StaticPeers(pub BTreeSet<String>);

impl PeerResolver for StaticPeers {
    fn resolve(&self) -> BoxFuture<'_, Result<BTreeSet<String>, MembershipError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }

    fn has_sources(&self) -> bool {
        !self.0.is_empty()
    }
}

/// One peer's status, as `/v1/status` (`peers[]`), `/v1/cluster` and `INFO replication` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node name from its handshake (empty until the first handshake).
    pub name: String,
    /// The address this node dials.
    pub address: String,
    /// Whether the outgoing connection is established.
    pub connected: bool,
    /// The peer's last announced state.
    pub state: Option<NodeState>,
    /// Local writes the peer is not known to hold yet.
    pub lag_ops: u64,
    /// Milliseconds since the peer was last heard from (`None`: never).
    pub last_seen_ms_ago: Option<u64>,
    /// The peer announced it is leaving.
    pub left: bool,
    /// The peer's last heartbeat announced its memory alarm (while connected).
    pub memory_alarm: bool,
    /// The peer's wall clock minus this node's (ms), measured from heartbeats; `None` before
    /// the first measurement.
    pub clock_skew_ms: Option<i64>,
}

/// What [`decide_start`] sees of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPeer {
    /// Its node name.
    pub name: String,
    /// Its announced state.
    pub state: NodeState,
    /// Whether it held data when its link came up (its hello's `has_data`): a loading peer
    /// that recovered from disc is worth an anti-entropy round.
    pub has_data: bool,
}

impl StartPeer {
    /// Whether an anti-entropy round with this peer is worth running: it is ready (or
    /// leaving), or it is loading with data of its own (recovered from disc). An empty loading
    /// peer gets a snapshot instead.
    pub fn round_partner(&self) -> bool {
        match self.state {
            NodeState::Ready | NodeState::Leaving => true,
            NodeState::Loading => self.has_data,
            NodeState::Left => false,
        }
    }
}

/// What a starting node does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// Serve now: the first node of the cluster (or a node whose data is all there is).
    Seed(String),
    /// Stream a snapshot from this peer, then anti-entropy with every ready peer.
    Bootstrap(String),
    /// Has data: anti-entropy with every ready peer and every loading peer with data, then
    /// serve.
    CatchUp,
    /// Keep waiting, for this reason.
    Wait(String),
}

/// The first-start rule (see the module documentation). `peers` are the connected peers;
/// `all_connected` says whether every discovered peer is among them.
pub fn decide_start(
    own_name: &str,
    has_data: bool,
    has_sources: bool,
    peers: &[StartPeer],
    all_connected: bool,
    waited_enough: bool,
) -> StartDecision {
    if !has_sources {
        return StartDecision::Seed("no peers configured: single-node cluster".into());
    }
    let mut ready: Vec<&StartPeer> = peers
        .iter()
        .filter(|peer| peer.state == NodeState::Ready)
        .collect();
    ready.sort_by_key(|peer| (ordinal(&peer.name).unwrap_or(u32::MAX), peer.name.clone()));
    if let Some(source) = ready.first() {
        return if has_data {
            StartDecision::CatchUp
        } else {
            StartDecision::Bootstrap(source.name.clone())
        };
    }
    if has_data && (all_connected || waited_enough) {
        // A whole cluster restarting from disc: no peer is ready, each holds data. Once every
        // discovered peer is connected (or after the wait, the reachable ones), a round with
        // each that has data leaves them all holding everything any of them held; no need to
        // wait for a ready peer that cannot appear.
        return if peers.iter().any(StartPeer::round_partner) {
            StartDecision::CatchUp
        } else {
            StartDecision::Seed(if waited_enough {
                "no ready peer reachable; serving local data".into()
            } else {
                "every peer is empty: serving local data".into()
            })
        };
    }
    if !waited_enough {
        return StartDecision::Wait(format!(
            "looking for a ready peer ({} connected, none ready)",
            peers.len()
        ));
    }
    match ordinal(own_name) {
        Some(0) => StartDecision::Seed("no ready peer reachable and this is ordinal 0: seeding the cluster".into()),
        Some(ordinal) => StartDecision::Wait(format!(
            "no ready peer reachable; ordinal {ordinal} never seeds an empty cluster, waiting for ordinal 0 or another ready peer"
        )),
        None => StartDecision::Wait(format!(
            "no ready peer reachable; node name {own_name:?} has no ordinal, only ordinal 0 seeds an empty cluster"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, state: NodeState) -> StartPeer {
        StartPeer {
            name: name.into(),
            state,
            has_data: false,
        }
    }

    fn with_data(name: &str) -> StartPeer {
        StartPeer {
            name: name.into(),
            state: NodeState::Loading,
            has_data: true,
        }
    }

    #[test]
    fn ordinals_come_from_the_pod_name() {
        assert_eq!(ordinal("demo-0"), Some(0));
        assert_eq!(ordinal("my-cluster-12"), Some(12));
        assert_eq!(ordinal("demo"), None);
        assert_eq!(ordinal("demo-"), None);
        assert_eq!(ordinal("demo-x1"), None);
    }

    #[test]
    fn single_node_without_peers_seeds() {
        assert!(matches!(
            decide_start("demo-3", false, false, &[], false, false),
            StartDecision::Seed(_)
        ));
    }

    #[test]
    fn empty_node_bootstraps_from_the_lowest_ready_ordinal() {
        let peers = [
            peer("demo-2", NodeState::Ready),
            peer("demo-1", NodeState::Ready),
            peer("demo-0", NodeState::Loading),
        ];
        assert_eq!(
            decide_start("demo-3", false, true, &peers, false, false),
            StartDecision::Bootstrap("demo-1".into())
        );
        assert_eq!(
            decide_start("demo-3", true, true, &peers, false, false),
            StartDecision::CatchUp
        );
    }

    #[test]
    fn only_ordinal_zero_seeds_an_empty_cluster_after_the_wait() {
        let peers = [
            peer("demo-1", NodeState::Loading),
            peer("demo-2", NodeState::Loading),
        ];
        assert!(matches!(
            decide_start("demo-0", false, true, &peers, false, false),
            StartDecision::Wait(_)
        ));
        assert!(matches!(
            decide_start("demo-0", false, true, &peers, false, true),
            StartDecision::Seed(_)
        ));
        let StartDecision::Wait(reason) = decide_start(
            "demo-1",
            false,
            true,
            &[peer("demo-2", NodeState::Loading)],
            false,
            true,
        ) else {
            panic!("ordinal 1 must wait");
        };
        assert!(reason.contains("ordinal 1 never seeds"), "{reason}");
        assert!(matches!(
            decide_start("solo", false, true, &[], false, true),
            StartDecision::Wait(_)
        ));
        // Data beats waiting forever.
        assert!(matches!(
            decide_start("demo-1", true, true, &[], false, true),
            StartDecision::Seed(_)
        ));
    }

    #[test]
    fn a_whole_cluster_restarting_from_disc_catches_up_as_soon_as_every_peer_is_connected() {
        let peers = [with_data("demo-0"), with_data("demo-2")];
        // A discovered peer is not connected yet: wait for it (it may hold the newest writes).
        assert!(matches!(
            decide_start("demo-1", true, true, &peers, false, false),
            StartDecision::Wait(_)
        ));
        // Every peer connected, none ready, all with data: reconcile with them and serve.
        assert_eq!(
            decide_start("demo-1", true, true, &peers, true, false),
            StartDecision::CatchUp
        );
        // After the wait, with the reachable ones.
        assert_eq!(
            decide_start("demo-1", true, true, &peers[..1], false, true),
            StartDecision::CatchUp
        );
        // Every peer connected and empty: nothing to reconcile with.
        let empty = [peer("demo-0", NodeState::Loading)];
        assert_eq!(
            decide_start("demo-1", true, true, &empty, true, false),
            StartDecision::Seed("every peer is empty: serving local data".into())
        );
        // An empty node waits for a ready peer as before, whoever has data.
        assert!(matches!(
            decide_start("demo-1", false, true, &peers, true, false),
            StartDecision::Wait(_)
        ));
    }

    #[tokio::test]
    async fn static_discovery_lists_trimmed_peers() {
        let discovery = Discovery::new(&[" a:1".into(), "b:2".into(), String::new()], None, 7379)
            .expect("discovery");
        assert!(discovery.has_sources());
        let peers = discovery.resolve().await.expect("resolve");
        assert_eq!(
            peers.into_iter().collect::<Vec<_>>(),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert!(!Discovery::new(&[], None, 7379)
            .expect("discovery")
            .has_sources());
    }
}
