//! The replication handle, [`Replication`]: what the store's write path, the server and the
//! HTTP endpoints call (submit writes and touches, wait for write acks, peer status, leave,
//! shut down), and [`Replication::start`], which starts the background tasks of the other
//! files. Also the handle's errors and the write-ack levels.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::anti_entropy::run_rounds;
use super::bootstrap::bootstrap;
use super::clock::HybridClock;
use super::config::ReplicationConfig;
use super::discovery::discovery_loop;
use super::link::inbound::accept_loop;
use super::link::publish::{Publication, Publications, PublishCounts, PublishSink};
use super::membership::{PeerResolver, PeerStatus};
use super::metrics::ReplicationMetrics;
use super::oplog::{LogItem, OpLog};
use super::replica::Replica;
use super::shared::{outbox_messages, set_state, LinkCommand, Peers, Shared};
use super::tombstones::tombstone_collector;
use super::touches::{coalesce, drop_superseded, flush_touches, touch_flusher};
use super::transport::Transport;
use super::wire::NodeState;
use crate::store::{Record, Stamp, Touch};

/// How many peers must hold a write before the client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAck {
    /// Answer after the local apply.
    None,
    /// One member peer acknowledged.
    One,
    /// Every member peer acknowledged (a down or partitioned member makes the write fail).
    All,
}

/// Replication failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// The peer listener could not be bound.
    #[error("failed to start replication: {0}")]
    Listen(String),
    /// Not enough peers acknowledged a write in time. The write is applied locally and will
    /// still replicate; the client is told it is not durable on enough nodes. The text starts
    /// with Redis's `NOREPLICAS` error code.
    #[error("NOREPLICAS Not enough good replicas to write: {acked} of {required} peer(s) acknowledged within {timeout_ms} ms")]
    NotEnoughReplicas {
        /// Peers that acknowledged.
        acked: usize,
        /// Peers required.
        required: usize,
        /// How long it waited.
        timeout_ms: u64,
    },
    /// Leaving timed out before these peers held every local write.
    #[error("left before these peers held every local write: {}", peers.join(", "))]
    LeaveIncomplete {
        /// The peers still behind.
        peers: Vec<String>,
    },
    /// The engine was shut down.
    #[error("replication is shut down")]
    Stopped,
}

/// The replication handle: cheap to clone, shared by the store's write path, the server and
/// the HTTP status endpoints.
#[derive(Clone)]
pub struct Replication {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Replication")
            .field("node_name", &self.shared.config.node_name)
            .field("local_address", &self.shared.local_address)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// Binds the peer listener and starts every background task. The node starts `loading`
    /// and becomes `ready` by the first-start rule (see [`super::membership`]).
    pub async fn start(
        config: ReplicationConfig,
        replica: Arc<dyn Replica>,
        transport: Arc<dyn Transport>,
        resolver: Arc<dyn PeerResolver>,
    ) -> Result<Replication, ReplicationError> {
        let listener = transport
            .listen(&config.listen_address)
            .await
            .map_err(|error| ReplicationError::Listen(error.to_string()))?;
        let local_address = listener.local_address();
        let mut peers = Peers::default();
        peers.self_addresses.insert(local_address.clone());
        if let Some(advertise) = &config.advertise_address {
            peers.self_addresses.insert(advertise.clone());
        }
        let shared = Arc::new(Shared {
            clock: HybridClock::new(
                config.wall_clock.clone(),
                config.max_clock_drift.as_millis() as u64,
            ),
            log: OpLog::new(config.oplog_max_items, config.oplog_max_bytes),
            config,
            replica,
            transport,
            resolver,
            pending_touches: Mutex::new(HashMap::new()),
            peers: Mutex::new(peers),
            inbound: Mutex::new(HashMap::new()),
            discover_now: Notify::new(),
            acks: watch::Sender::new(0),
            state: watch::Sender::new(NodeState::Loading),
            memory_alarm: watch::Sender::new(false),
            loading: AtomicBool::new(true),
            reason: Mutex::new(Some("loading: starting".into())),
            metrics: ReplicationMetrics::default(),
            shutdown: CancellationToken::new(),
            local_address,
            outbox_gauges: Mutex::new(Vec::new()),
            publications: Publications::default(),
            refused: Mutex::new(HashSet::new()),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        tokio::spawn(discovery_loop(shared.clone()));
        tokio::spawn(bootstrap(shared.clone()));
        tokio::spawn(touch_flusher(shared.clone()));
        tokio::spawn(tombstone_collector(shared.clone()));
        Ok(Replication { shared })
    }

    /// The bound peer address.
    pub fn local_address(&self) -> &str {
        &self.shared.local_address
    }

    /// This node's id (the origin of its stamps).
    pub fn node_id(&self) -> u32 {
        self.shared.config.node_id
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// A new stamp for a local write.
    pub fn stamp(&self) -> Stamp {
        self.stamp_after(0)
    }

    /// A new stamp for a local write that replaces a version stamped `replaced` (its HLC):
    /// above it, whatever this node's clock says (see [`HybridClock::now_after`]).
    pub fn stamp_after(&self, replaced: u64) -> Stamp {
        Stamp {
            hlc: self.shared.clock.now_after(replaced),
            origin: self
                .shared
                .config
                .stamp_origin
                .unwrap_or(self.shared.config.node_id),
        }
    }

    /// The hybrid logical clock.
    pub fn clock(&self) -> &HybridClock {
        &self.shared.clock
    }

    /// Queues a record the local store just applied and returns its sequence number, for
    /// [`Replication::wait_acked`]. Non-blocking: safe under the store's shard lock.
    pub fn submit(&self, record: Record) -> u64 {
        drop_superseded(&self.shared, &record);
        self.shared.log.append(LogItem::Record(record))
    }

    /// Queues a touch; touches of one key are coalesced (latest wins) until the next flush.
    pub fn submit_touch(&self, touch: Touch) {
        coalesce(&self.shared, touch);
    }

    /// Sends a `PUBLISH` (`shard`: `SPUBLISH`) made on this node to every connected peer, for
    /// their subscribers; never waits (see [`super::link::publish`]).
    pub fn publish(&self, shard: bool, channel: Bytes, message: Bytes) {
        self.shared.publications.publish(Publication {
            shard,
            channel,
            message,
        });
    }

    /// Installs what a `PUBLISH` from a peer is handed to: the node's local subscribers.
    /// Returns `false` when one was installed already.
    pub fn set_publish_sink(&self, sink: PublishSink) -> bool {
        self.shared.publications.set_sink(sink)
    }

    /// Publications sent to, received from and dropped for peers.
    pub fn publish_counts(&self) -> PublishCounts {
        self.shared.publications.counts()
    }

    /// Moves every pending touch into the log now.
    pub fn flush_touches(&self) {
        flush_touches(&self.shared);
    }

    /// Waits until enough peers hold everything up to `seq`: `None` returns at once, `One`
    /// needs one member peer, `All` every member peer (a member that is down or partitioned
    /// makes `All` fail). With no member peers at all (a single-node cluster) both succeed.
    pub async fn wait_acked(
        &self,
        seq: u64,
        ack: WriteAck,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        self.wait_writes_acked(1, seq, ack, timeout).await
    }

    /// Like [`Replication::wait_acked`] for the writes with sequence numbers `first..=last`
    /// only (what one client batch submitted): a peer holds them when it holds everything up to
    /// `last`, or when it acknowledged them on its current push stream. The second case counts
    /// a peer that joined after older writes (a restarted node, whose earlier gap only an
    /// anti-entropy round closes) as soon as it applied these writes.
    pub async fn wait_writes_acked(
        &self,
        first: u64,
        last: u64,
        ack: WriteAck,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        if ack == WriteAck::None {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.acks.subscribe();
        loop {
            changes.borrow_and_update();
            let (acked, members) = acked_members(&self.shared, first.max(1), last);
            let required = match ack {
                WriteAck::None => 0,
                WriteAck::One => members.min(1),
                WriteAck::All => members,
            };
            if acked >= required {
                return Ok(());
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(ReplicationError::Stopped);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ReplicationError::NotEnoughReplicas {
                        acked,
                        required,
                        timeout_ms: timeout.as_millis() as u64,
                    });
                }
            }
        }
    }

    /// Announces this node's memory alarm to the peers: in every heartbeat, and in one sent at
    /// once on every link when it changes.
    pub fn set_memory_alarm(&self, alarm: bool) {
        self.shared.memory_alarm.send_if_modified(|current| {
            let changed = *current != alarm;
            *current = alarm;
            changed
        });
    }

    /// The names of the connected peers whose last heartbeat announced a memory alarm.
    pub fn peers_in_memory_alarm(&self) -> Vec<String> {
        let peers = self.shared.peers.lock();
        let mut names: Vec<String> = peers
            .by_address
            .values()
            .filter(|entry| entry.connected && entry.memory_alarm)
            .filter_map(|entry| entry.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The peers for `/v1/status`, `/v1/cluster` and `INFO replication`, sorted by address.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let head = self.shared.log.head();
        let peers = self.shared.peers.lock();
        peers
            .by_address
            .iter()
            .map(|(address, entry)| {
                let synced = entry
                    .name
                    .as_ref()
                    .and_then(|name| peers.cursors.get(name))
                    .map(|(_, cursor)| cursor.synced)
                    .unwrap_or(0);
                PeerStatus {
                    name: entry.name.clone().unwrap_or_default(),
                    address: address.clone(),
                    connected: entry.connected,
                    state: entry.state,
                    lag_ops: head.saturating_sub(synced),
                    last_seen_ms_ago: entry
                        .last_seen
                        .map(|seen| seen.elapsed().as_millis() as u64),
                    left: entry.left,
                    memory_alarm: entry.memory_alarm && entry.connected,
                    clock_skew_ms: entry.clock.offset_ms(),
                }
            })
            .collect()
    }

    /// `loading`, `ready`, `leaving` or `left`.
    pub fn state(&self) -> NodeState {
        *self.shared.state.borrow()
    }

    /// Whether the node is `loading` (not synced with its peers yet): cheap, for every client
    /// command.
    pub fn is_loading(&self) -> bool {
        self.shared.loading.load(Ordering::Relaxed)
    }

    /// Why the node is not ready (for `/readyz`), `None` when ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.shared.reason.lock().clone()
    }

    /// Notified on every state change.
    pub fn subscribe_state(&self) -> watch::Receiver<NodeState> {
        self.shared.state.subscribe()
    }

    /// The log head (last sequence submitted).
    pub fn head(&self) -> u64 {
        self.shared.log.head()
    }

    /// The items and approximate bytes the op-log retains.
    pub fn log_len_and_bytes(&self) -> (usize, usize) {
        self.shared.log.len_and_bytes()
    }

    /// Messages queued in the outboxes of every live link (each bounded: see
    /// docs/replication.md, Bounded queues).
    pub fn outbox_messages(&self) -> u64 {
        outbox_messages(&self.shared)
    }

    /// Requests of peers queued or being answered on every inbound link.
    pub fn requests_queued(&self) -> u64 {
        self.shared.metrics.requests_queued.load(Ordering::Relaxed)
    }

    /// The counters.
    pub fn metrics(&self) -> &ReplicationMetrics {
        &self.shared.metrics
    }

    /// Runs an anti-entropy round with every connected ready peer now and waits for them
    /// (bounded by `timeout`); returns how many completed.
    pub async fn anti_entropy_now(&self, timeout: Duration) -> usize {
        run_rounds(&self.shared, timeout).await
    }

    /// Leaves the cluster: goes `leaving`, flushes pending touches, waits (at most `timeout`)
    /// until every connected peer holds the whole log, tells every peer it is leaving (so
    /// `write-ack all` on the others stops waiting for it), then goes `left`. Background tasks
    /// keep running until [`Replication::shutdown`].
    pub async fn leave(&self, timeout: Duration) -> Result<(), ReplicationError> {
        set_state(&self.shared, NodeState::Leaving, Some("leaving".into()));
        flush_touches(&self.shared);
        let head = self.shared.log.head();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.acks.subscribe();
        let behind = loop {
            changes.borrow_and_update();
            let behind = peers_behind(&self.shared, head);
            if behind.is_empty() {
                break behind;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => break behind,
            }
        };
        let mut replies = Vec::new();
        for entry in self.shared.peers.lock().by_address.values() {
            let (reply, wait) = oneshot::channel();
            if entry.connected && entry.commands.send(LinkCommand::Leave(reply)).is_ok() {
                replies.push(wait);
            }
        }
        let _ = tokio::time::timeout_at(
            deadline.max(tokio::time::Instant::now() + Duration::from_millis(200)),
            futures::future::join_all(replies),
        )
        .await;
        set_state(
            &self.shared,
            NodeState::Left,
            Some("left the cluster".into()),
        );
        if behind.is_empty() {
            Ok(())
        } else {
            Err(ReplicationError::LeaveIncomplete { peers: behind })
        }
    }

    /// Stops every background task and closes every connection.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}

/// (member peers holding the writes `first..=last`, member peers). Members are discovered peers
/// that did not leave, counted once per name; a never-reached peer is a member that holds
/// nothing.
fn acked_members(shared: &Shared, first: u64, last: u64) -> (usize, usize) {
    let peers = shared.peers.lock();
    let mut names = BTreeSet::new();
    let mut unnamed = 0;
    for entry in peers.by_address.values().filter(|entry| !entry.left) {
        match &entry.name {
            Some(name) => {
                names.insert((name.clone(), entry.node_id));
            }
            None => unnamed += 1,
        }
    }
    let acked = names
        .iter()
        .filter(|(name, node_id)| {
            peers
                .cursors
                .get(name)
                .is_some_and(|(cursor_node, cursor)| {
                    Some(*cursor_node) == *node_id && cursor.holds(first, last)
                })
        })
        .count();
    (acked, names.len() + unnamed)
}

/// The connected members not known to hold everything up to `head`, by name (address when
/// the name is not known yet).
fn peers_behind(shared: &Shared, head: u64) -> Vec<String> {
    let peers = shared.peers.lock();
    peers
        .by_address
        .iter()
        .filter(|(_, entry)| entry.connected && !entry.left)
        .filter(|(_, entry)| {
            entry
                .name
                .as_ref()
                .and_then(|name| peers.cursors.get(name))
                .is_none_or(|(_, cursor)| cursor.synced < head)
        })
        .map(|(address, entry)| entry.name.clone().unwrap_or_else(|| address.clone()))
        .collect()
}
