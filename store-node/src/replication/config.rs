//! The tunables of replication ([`ReplicationConfig`]: identity, listen address, batch and
//! log bounds, timers) and the node's incarnation id ([`generate_node_id`]), what the node
//! derives from its flags before it starts replication.

use std::sync::Arc;
use std::time::Duration;

use super::clock::{system_wall_clock, WallClock};
use super::transport::PeerRefusals;
use super::wire::DEFAULT_MAX_FRAME;

/// Tunables of replication; [`ReplicationConfig::new`] gives production defaults.
#[derive(Clone)]
pub struct ReplicationConfig {
    /// Cluster name; peers announcing another one are refused.
    pub cluster: String,
    /// This node's name (`POD_NAME`).
    pub node_name: String,
    /// This process's incarnation id, announced in the peer handshake, where peers key the
    /// replication cursors they resume from (see [`generate_node_id`]); new at every start, so
    /// a restarted node is never trusted at a cursor it may have lost writes behind. It is also
    /// the origin of local stamps unless [`ReplicationConfig::stamp_origin`] is set.
    pub node_id: u32,
    /// The origin of local stamps when it must outlive the process (disc mode: the persistent
    /// node id of the data directory); `None` = [`ReplicationConfig::node_id`].
    pub stamp_origin: Option<u32>,
    /// Address the peer listener binds (`<bind>:<peer-port>`).
    pub listen_address: String,
    /// Address peers reach this node at (`<POD_IP>:<peer-port>`), to skip it in discovery.
    pub advertise_address: Option<String>,
    /// Most items per batch.
    pub batch_max_items: usize,
    /// About the most bytes per batch.
    pub batch_max_bytes: usize,
    /// Touches are coalesced per key for this long before entering the log.
    pub touch_flush_interval: Duration,
    /// Heartbeat period on every link.
    pub heartbeat_interval: Duration,
    /// A link that hears nothing for this long is closed and redialled.
    pub peer_timeout: Duration,
    /// Connection attempt bound.
    pub connect_timeout: Duration,
    /// Longest pause between reconnection attempts.
    pub reconnect_max_backoff: Duration,
    /// Peer discovery period.
    pub discovery_interval: Duration,
    /// Anti-entropy period per link.
    pub anti_entropy_interval: Duration,
    /// Tombstones are kept at least this long, and until every peer completed an anti-entropy
    /// round that started this long after the delete.
    pub tombstone_grace: Duration,
    /// Tombstone collection period.
    pub tombstone_gc_interval: Duration,
    /// How long an empty node looks for a ready peer before the first-start rule applies.
    pub first_start_wait: Duration,
    /// How long a starting node that caught up waits for its ready peers to dial it back
    /// before it reports ready anyway (see `wait_for_links_back`).
    pub links_back_wait: Duration,
    /// Op-log bound in items.
    pub oplog_max_items: usize,
    /// Op-log bound in bytes.
    pub oplog_max_bytes: usize,
    /// Records per snapshot or repair message.
    pub chunk_records: usize,
    /// Largest frame body.
    pub max_frame: usize,
    /// The drift bound: remote stamps further ahead of cluster time than this are refused
    /// (once the peers' clocks were measured) and do not move the local clock.
    pub max_clock_drift: Duration,
    /// Wall clock (Unix ms).
    pub wall_clock: WallClock,
    /// Where peers refused for their hello (another cluster or protocol version) are counted,
    /// beside the transport's refusals.
    pub peer_refusals: Arc<PeerRefusals>,
}

impl std::fmt::Debug for ReplicationConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReplicationConfig")
            .field("cluster", &self.cluster)
            .field("node_name", &self.node_name)
            .field("node_id", &self.node_id)
            .field("listen_address", &self.listen_address)
            .finish_non_exhaustive()
    }
}

impl ReplicationConfig {
    /// Production defaults for the given identity and listen address.
    pub fn new(
        cluster: &str,
        node_name: &str,
        node_id: u32,
        listen_address: &str,
    ) -> ReplicationConfig {
        ReplicationConfig {
            cluster: cluster.to_string(),
            node_name: node_name.to_string(),
            node_id,
            stamp_origin: None,
            listen_address: listen_address.to_string(),
            advertise_address: None,
            batch_max_items: 4096,
            batch_max_bytes: 1 << 20,
            touch_flush_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            reconnect_max_backoff: Duration::from_secs(2),
            discovery_interval: Duration::from_secs(5),
            anti_entropy_interval: Duration::from_secs(30),
            tombstone_grace: Duration::from_secs(3600),
            tombstone_gc_interval: Duration::from_secs(60),
            first_start_wait: Duration::from_secs(15),
            links_back_wait: Duration::from_secs(15),
            oplog_max_items: 1_000_000,
            oplog_max_bytes: 64 << 20,
            chunk_records: 1000,
            max_frame: DEFAULT_MAX_FRAME,
            max_clock_drift: Duration::from_secs(10),
            wall_clock: system_wall_clock(),
            peer_refusals: Arc::default(),
        }
    }
}

/// A random node id (the stamp origin), new at every start.
pub fn generate_node_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 32) as u32
}
