//! The node's side of replication: starting it from the configuration before the node serves,
//! the `--write-ack` wait of a RESP connection ([`WriteAcks`]), and leaving the cluster
//! (SIGTERM and `POST /v1/cluster/leave`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::config;
use crate::replication::{
    generate_node_id, Discovery, FaultyTransport, Replica, Replication, ReplicationConfig,
    ReplicationError, TcpTransport, Transport, TransportFaults, WriteAck,
};
use crate::state::{Lifecycle, NodeState};
use crate::store::{take_logged, take_submitted_seq};

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
        &config.cluster_name(),
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
    let tcp: Arc<dyn Transport> = Arc::new(TcpTransport::new(replication_config.max_frame));
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
    state.engine.set_replication(replication);
    Ok(())
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

/// The wait of one connection before it answers writes: durability in the write-ahead log
/// (disc mode, [`crate::persistence::Persistence::wait_durable`]) and the `--write-ack`
/// acknowledgements of replication. It knows which replies in the output buffer answer such
/// writes. Inert (one branch per command) in RAM mode without replication or with
/// `--write-ack none`.
#[derive(Debug)]
pub struct WriteAcks {
    level: Option<WriteAck>,
    durable: bool,
    timeout: Duration,
    /// The sequence numbers the answered writes submitted (`first..=seq`; 0 when none).
    first: u64,
    seq: u64,
    log_seq: u64,
    log_failed: bool,
    spans: Vec<(usize, usize)>,
}

impl WriteAcks {
    /// The wait for a connection of this node.
    pub fn new(state: &NodeState) -> WriteAcks {
        let level = match state.config.write_ack {
            config::WriteAck::None => None,
            config::WriteAck::One => Some(WriteAck::One),
            config::WriteAck::All => Some(WriteAck::All),
        };
        WriteAcks {
            level: level.filter(|_| state.replication().is_some()),
            durable: state.engine.persistence().is_some(),
            timeout: Duration::from_millis(state.config.write_ack_timeout_ms),
            first: 0,
            seq: 0,
            log_seq: 0,
            log_failed: false,
            spans: Vec::new(),
        }
    }

    /// Whether writes wait at all.
    pub fn enabled(&self) -> bool {
        self.level.is_some() || self.durable
    }

    /// Call right after a command executed (synchronously, on this thread, before any
    /// `.await`) with the span `start..end` of the output its reply was encoded at.
    pub fn note(&mut self, start: usize, end: usize) {
        if !self.enabled() {
            return;
        }
        let (log_seq, log_failed) = if self.durable {
            take_logged()
        } else {
            (0, false)
        };
        let (first, seq) = if self.level.is_some() {
            take_submitted_seq()
        } else {
            (0, 0)
        };
        if seq > 0 || log_seq > 0 || log_failed {
            if first > 0 {
                self.first = if self.first == 0 {
                    first
                } else {
                    self.first.min(first)
                };
            }
            self.seq = self.seq.max(seq);
            self.log_seq = self.log_seq.max(log_seq);
            self.log_failed |= log_failed;
            self.spans.push((start, end));
        }
    }

    /// Waits (holding no lock) until the writes answered in `output` are durable in the log
    /// and acknowledged by replication. When the log failed, each write's reply becomes the
    /// log's error (`MISCONF ...`); when the acknowledgements do not come in time, it becomes
    /// the replication error (`NOREPLICAS ...`). The writes stay applied (and still
    /// replicate). Returns whether it waited (for the log or for replication), which lets
    /// every other ready connection on the thread run first.
    pub async fn settle(&mut self, state: &NodeState, output: &mut BytesMut) -> bool {
        if self.spans.is_empty() {
            return false;
        }
        let mut waited = false;
        let mut failure = None;
        if let Some(persistence) = state.engine.persistence() {
            let result = if self.log_failed {
                Err(persistence
                    .check_writable()
                    .err()
                    .map(|error| error.to_string())
                    .unwrap_or_else(|| "MISCONF Errors writing to the write-ahead log".to_string()))
            } else if self.log_seq > 0 {
                waited = true;
                persistence
                    .wait_durable(self.log_seq)
                    .await
                    .map_err(|error| error.to_string())
            } else {
                Ok(())
            };
            if let Err(text) = result {
                let text = if text.starts_with("MISCONF") {
                    text
                } else {
                    format!("MISCONF {text}")
                };
                failure = Some(format!("-{text}\r\n"));
            }
        }
        if failure.is_none() && self.seq > 0 {
            if let (Some(level), Some(replication)) = (self.level, state.replication()) {
                waited = true;
                if let Err(error) = replication
                    .wait_writes_acked(self.first, self.seq, level, self.timeout)
                    .await
                {
                    failure = Some(match error {
                        ReplicationError::NotEnoughReplicas { .. } => format!("-{error}\r\n"),
                        other => format!("-ERR {other}\r\n"),
                    });
                }
            }
        }
        if let Some(line) = failure {
            let mut patched = BytesMut::with_capacity(output.len());
            let mut position = 0;
            for (start, end) in &self.spans {
                patched.extend_from_slice(&output[position..*start]);
                patched.extend_from_slice(line.as_bytes());
                position = *end;
            }
            patched.extend_from_slice(&output[position..]);
            *output = patched;
        }
        self.first = 0;
        self.seq = 0;
        self.log_seq = 0;
        self.log_failed = false;
        self.spans.clear();
        waited
    }
}

/// Waits for the write-ahead log (disc mode) and then (bounded) for the write-ack level of
/// the node after an HTTP write. `Err` carries the log's (`MISCONF ...`) or replication's
/// error text.
pub async fn settle_http(state: &NodeState) -> Result<(), String> {
    let (first, seq) = take_submitted_seq();
    let (log_seq, log_failed) = take_logged();
    if let Some(persistence) = state.engine.persistence() {
        if log_failed {
            return Err(persistence
                .check_writable()
                .err()
                .map(|error| error.to_string())
                .unwrap_or_else(|| "MISCONF Errors writing to the write-ahead log".to_string()));
        }
        if log_seq > 0 {
            persistence
                .wait_durable(log_seq)
                .await
                .map_err(|error| error.to_string())?;
        }
    }
    let Some(replication) = state.replication() else {
        return Ok(());
    };
    let level = match state.config.write_ack {
        config::WriteAck::None => return Ok(()),
        config::WriteAck::One => WriteAck::One,
        config::WriteAck::All => WriteAck::All,
    };
    if seq == 0 {
        return Ok(());
    }
    replication
        .wait_writes_acked(
            first,
            seq,
            level,
            Duration::from_millis(state.config.write_ack_timeout_ms),
        )
        .await
        .map_err(|error| error.to_string())
}
