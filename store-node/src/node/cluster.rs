//! The node's side of replication: starting it from the configuration before the node serves
//! data commands, and leaving the cluster (SIGTERM and `POST /v1/cluster/leave`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::state::{Lifecycle, NodeState};
use crate::config::Config;
use crate::pubsub::Kind;
use crate::replication::membership::ordinal;
use crate::replication::{
    generate_node_id, Discovery, FaultyTransport, Replica, Replication, ReplicationConfig,
    TcpTransport, Transport, TransportFaults,
};

/// Replication could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The peer resolver could not be built.
    #[error("failed to set up peer discovery: {0}")]
    Discovery(String),
    /// The replication engine could not start (typically the peer port is taken).
    #[error("failed to start replication: {0}")]
    Start(String),
}

/// Starts replication for a node whose configuration names peers, and installs it in the
/// engine; call before anything is served so every write is stamped. In disc mode `disc` is
/// the persistent node id, the origin of local stamps, and the greatest recovered stamp, which
/// the clock is moved past. The handshake always announces a fresh per-process id, so peers
/// never resume a restarted node at a cursor it may have lost writes behind.
pub async fn start_replication(
    state: &NodeState,
    disc: Option<(u32, u64)>,
) -> Result<(), ClusterError> {
    let config = &state.config;
    let listen = SocketAddr::new(config.bind, config.peer_port).to_string();
    let mut replication_config = ReplicationConfig::new(
        &cluster_name(config),
        &state.node_name,
        generate_node_id(),
        &listen,
    );
    replication_config.advertise_address = config.advertise_address.as_ref().map(|address| {
        match address.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, config.peer_port).to_string(),
            Err(_) => format!("{address}:{}", config.peer_port),
        }
    });
    replication_config.stamp_origin = disc.map(|(origin, _)| origin);
    replication_config.first_start_wait = Duration::from_millis(config.first_start_wait_ms);
    replication_config.anti_entropy_interval =
        Duration::from_millis(config.anti_entropy_interval_ms.max(100));
    bound_transient_memory(&mut replication_config, state.engine.memory().limit_bytes);
    replication_config.peer_refusals = state.security.peer_refusals.clone();
    let security = state.security.peer_security(
        replication_config
            .connect_timeout
            .max(replication_config.peer_timeout),
    );
    match (security.tls.is_some(), security.keys.is_some()) {
        (false, false) => tracing::warn!(
            "peers are not authenticated: set --peer-key-file or --tls-replication (docs/security.md)"
        ),
        (tls, key) => tracing::info!(tls, peer_key = key, "peers authenticate before any message"),
    }
    let tcp: Arc<dyn Transport> = Arc::new(TcpTransport::secured(
        replication_config.max_frame,
        security,
    ));
    let transport: Arc<dyn Transport> = if config.test_faults {
        tracing::warn!("--test-faults is set: replication links can be cut over HTTP (tests only)");
        let faults = Arc::new(TransportFaults::default());
        let _ = state.test_faults.set(faults.clone());
        Arc::new(FaultyTransport::new(tcp, faults))
    } else {
        tcp
    };
    let resolver = Discovery::new(
        &config.peers,
        config.cluster_service_name.as_deref(),
        config.peer_port,
    )
    .map_err(|error| ClusterError::Discovery(error.to_string()))?;
    let replica: Arc<dyn Replica> = state.engine.clone();
    let replication =
        Replication::start(replication_config, replica, transport, Arc::new(resolver))
            .await
            .map_err(|error| ClusterError::Start(error.to_string()))?;
    tracing::info!(
        peer_addr = replication.local_address(),
        node_id = replication.node_id(),
        peers = ?config.peers,
        service = ?config.cluster_service_name,
        write_ack = ?config.write_ack,
        "replication started"
    );
    if let Some((_, max_hlc)) = disc {
        replication.clock().observe(max_hlc);
    }
    let hub = state.pubsub.clone();
    replication.set_publish_sink(Arc::new(move |shard, channel, message| {
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        hub.publish_local(kind, channel, message);
    }));
    state.hook.set_replication(replication);
    Ok(())
}

/// Bounds replication's transient memory by the node's memory limit: the op-log (it holds
/// every local write until each peer has it, so a peer that is down makes it grow to its bound)
/// to an eighth of the limit, and a snapshot chunk served to a joining peer (a copy of its
/// records, then their frame) to one record per 512 KiB of limit: 128 at 64 MiB, so a chunk of
/// 32 KiB values and its frame take 8 MiB, half the reserve (docs/memory.md). A peer that
/// falls off the shorter log is repaired by anti-entropy.
fn bound_transient_memory(config: &mut ReplicationConfig, limit_bytes: u64) {
    if limit_bytes == 0 {
        return;
    }
    let limit = usize::try_from(limit_bytes).unwrap_or(usize::MAX);
    config.oplog_max_bytes = config.oplog_max_bytes.min((limit / 8).max(1 << 20));
    config.chunk_records = config.chunk_records.min((limit >> 19).max(16));
}

/// The replication cluster name: the node name without its StatefulSet ordinal, else the
/// Service name, else `sessionstore`. Peers announcing another name are refused.
fn cluster_name(config: &Config) -> String {
    let node_name = config.resolved_node_name();
    if ordinal(&node_name).is_some() {
        if let Some((base, _)) = node_name.rsplit_once('-') {
            return base.to_string();
        }
    }
    config
        .cluster_service_name
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sessionstore".to_string())
}

/// Stops serving clients and leaves the cluster within `timeout`: goes unready, closes the
/// RESP listener, lets connections finish the batch they are executing (a quarter of the bound
/// at most), then flushes replication to the peers ([`Replication::leave`]) and reports `left`.
pub async fn leave_cluster(state: &NodeState, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    state.set_lifecycle(Lifecycle::Leaving);
    state.stop_serving.cancel();
    let drain_until = tokio::time::Instant::now() + timeout / 4;
    while state.clients.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(replication) = state.replication() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match replication.leave(remaining).await {
            Ok(()) => tracing::info!("left the cluster: every peer holds every local write"),
            Err(error) => tracing::warn!(%error, "left the cluster incompletely"),
        }
    }
    state.set_lifecycle(Lifecycle::Left);
}
