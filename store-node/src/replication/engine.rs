//! The replication engine: the [`Replication`] handle the store and server use, and the
//! background tasks behind it (accept loop, one outgoing link per peer, discovery, bootstrap,
//! touch flushing, tombstone collection). See the module documentation of
//! [`crate::replication`] for the protocol.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::clock::{HybridClock, WallClock};
use super::membership::{decide_start, PeerResolver, PeerStatus, StartDecision, StartPeer};
use super::metrics::ReplicationMetrics;
use super::oplog::{LogItem, OpLog, PeerCursor};
use super::replica::Replica;
use super::transport::{Connection, MessageSender, Transport};
use super::wire::{Hello, Message, NodeState, PROTOCOL_VERSION};
use super::{ReplicationError, WriteAck};
use crate::store::digest::BUCKETS;
use crate::store::Stamp;
use crate::store::{Record, Touch};

/// Buckets listed per pass over the keyspace in an anti-entropy round: a round where every
/// bucket differs makes 8 passes (it made one per bucket, 256, which at 1M keys outlasted the
/// peer timeout) and holds about an eighth of the key list at a time.
const LIST_GROUP: usize = 32;

/// Bulk frames (log batches, snapshot chunks, anti-entropy lists and repairs) a link queues for
/// its writer beyond what the socket holds: a peer that reads slowly slows their producers down
/// instead of growing memory.
const BULK_QUEUE: usize = 8;

/// A link's writer puts every message already queued into one write, until about this many
/// bytes: under write load a batch, its ack and the next batch leave in one syscall each way
/// instead of one per frame.
const WRITE_COALESCE: usize = 256 * 1024;

/// Tunables of the engine; [`ReplicationConfig::new`] gives production defaults.
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
    /// Remote stamps further ahead of the wall clock than this do not move the local clock.
    pub max_clock_drift: Duration,
    /// Wall clock (Unix ms).
    pub wall_clock: WallClock,
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
            max_frame: super::wire::DEFAULT_MAX_FRAME,
            max_clock_drift: Duration::from_secs(60),
            wall_clock: super::clock::system_wall_clock(),
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

enum LinkCommand {
    Snapshot(oneshot::Sender<u64>),
    Round(oneshot::Sender<()>),
    Leave(oneshot::Sender<()>),
}

struct PeerEntry {
    name: Option<String>,
    node_id: Option<u32>,
    connected: bool,
    state: Option<NodeState>,
    last_seen: Option<Instant>,
    left: bool,
    /// Wall ms at which the last completed anti-entropy round with this peer started.
    last_round_started_ms: Option<u64>,
    commands: mpsc::UnboundedSender<LinkCommand>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Peers {
    by_address: BTreeMap<String, PeerEntry>,
    self_addresses: HashSet<String>,
    /// Keyed by peer name: survives reconnections and address changes.
    cursors: HashMap<String, (u32, PeerCursor)>,
}

struct Shared {
    config: ReplicationConfig,
    replica: Arc<dyn Replica>,
    transport: Arc<dyn Transport>,
    resolver: Arc<dyn PeerResolver>,
    clock: HybridClock,
    log: OpLog,
    pending_touches: Mutex<HashMap<Bytes, Touch>>,
    peers: Mutex<Peers>,
    /// Open inbound links by peer name: the peers that push their writes to this node.
    inbound: Mutex<HashMap<String, usize>>,
    /// Wakes discovery before its next period (a peer dialed in from an unknown address).
    discover_now: Notify,
    /// Bumped whenever an ack, a round or the membership changes.
    acks: watch::Sender<u64>,
    state: watch::Sender<NodeState>,
    reason: Mutex<Option<String>>,
    metrics: ReplicationMetrics,
    shutdown: CancellationToken,
    local_address: String,
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
            reason: Mutex::new(Some("loading: starting".into())),
            metrics: ReplicationMetrics::default(),
            shutdown: CancellationToken::new(),
            local_address,
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
        Stamp {
            hlc: self.shared.clock.now(),
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
        {
            let mut pending = self.shared.pending_touches.lock();
            if pending
                .get(&record.key)
                .is_some_and(|touch| touch.value_stamp < record.stamp)
            {
                // The new version supersedes it: the touch would be ignored everywhere anyway.
                pending.remove(&record.key);
            }
        }
        self.shared.log.append(LogItem::Record(record))
    }

    /// Queues a touch; touches of one key are coalesced (latest wins) until the next flush.
    pub fn submit_touch(&self, touch: Touch) {
        let mut pending = self.shared.pending_touches.lock();
        match pending.get_mut(&touch.key) {
            Some(existing) if existing.value_stamp > touch.value_stamp => {}
            Some(existing)
                if existing.value_stamp == touch.value_stamp
                    && existing.expire_at >= touch.expire_at => {}
            Some(existing) => *existing = touch,
            None => {
                pending.insert(touch.key.clone(), touch);
            }
        }
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
                }
            })
            .collect()
    }

    /// `loading`, `ready`, `leaving` or `left`.
    pub fn state(&self) -> NodeState {
        *self.shared.state.borrow()
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

/// The highest log sequence up to which every member holds everything (see
/// [`acked_members`] for who is a member); 0 when there is no member, or when one holds
/// nothing known yet (not yet reached, or a new incarnation).
fn held_by_every_member(peers: &Peers) -> u64 {
    peers
        .by_address
        .values()
        .filter(|entry| !entry.left)
        .map(|entry| {
            entry
                .name
                .as_ref()
                .and_then(|name| peers.cursors.get(name))
                .filter(|(cursor_node, _)| Some(*cursor_node) == entry.node_id)
                .map_or(0, |(_, cursor)| cursor.synced)
        })
        .min()
        .unwrap_or(0)
}

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

fn set_state(shared: &Shared, state: NodeState, reason: Option<String>) {
    *shared.reason.lock() = reason;
    shared.state.send_replace(state);
}

fn bump_acks(shared: &Shared) {
    shared
        .acks
        .send_modify(|version| *version = version.wrapping_add(1));
}

fn flush_touches(shared: &Shared) {
    let touches: Vec<Touch> = shared
        .pending_touches
        .lock()
        .drain()
        .map(|(_, touch)| touch)
        .collect();
    for touch in touches {
        shared.log.append(LogItem::Touch(touch));
    }
}

fn wall_ms(shared: &Shared) -> u64 {
    shared.clock.wall_ms()
}

/// Applies a remote record: adopts its clock, merges it by the replica's rules.
fn apply_remote(shared: &Shared, record: &Record) -> bool {
    if !shared.clock.observe(record.stamp.hlc) {
        debug!(
            origin = record.stamp.origin,
            "remote stamp too far ahead of the wall clock; not adopted"
        );
    }
    let now = wall_ms(shared);
    let forget_before = now.saturating_sub(shared.config.tombstone_grace.as_millis() as u64);
    shared.replica.apply(record, now, forget_before)
}

fn hello(shared: &Shared) -> Message {
    Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster: shared.config.cluster.clone(),
        node_name: shared.config.node_name.clone(),
        node_id: shared.config.node_id,
        advertise: shared
            .config
            .advertise_address
            .clone()
            .unwrap_or_else(|| shared.local_address.clone()),
        state: *shared.state.borrow(),
        has_data: !shared.replica.is_empty(),
    })
}

async fn send(
    shared: &Shared,
    sender: &mut Box<dyn MessageSender>,
    message: Message,
) -> Result<(), String> {
    let name = message.name();
    let bytes = sender
        .send(message)
        .await
        .map_err(|error| format!("{name}: {error}"))?;
    ReplicationMetrics::add(&shared.metrics.bytes_sent, bytes as u64);
    Ok(())
}

/// Queues records in chunks of the configured size.
async fn send_records(
    shared: &Shared,
    outbox: &Outbox,
    records: Vec<Record>,
    snapshot: bool,
) -> Result<(), String> {
    for chunk in records.chunks(shared.config.chunk_records.max(1)) {
        let records = chunk.to_vec();
        let message = if snapshot {
            Message::SnapshotChunk { records }
        } else {
            Message::RepairRecords { records }
        };
        outbox.bulk(message).await?;
    }
    Ok(())
}

/// A small message for a link's writer, and who to tell once it is on the wire.
type UrgentMessage = (Message, Option<oneshot::Sender<()>>);

/// The sending side of a link. One task per link ([`write_link`]) owns the transport's sender,
/// so the task that reads a link never waits for its socket to take a frame.
///
/// That is what keeps a link free of deadlock: if both ends could stop reading while they wait
/// to send, two full socket buffers (one end sending repair requests, the other their answers)
/// would block both forever. The dialer's reading task queues only urgent messages (never
/// waited for) and offers a log batch only when the bulk queue has room; the acceptor's reading
/// task queues its answers' work unbounded (what a peer can ask is bounded by the keys this
/// node listed to it). So each end keeps reading whatever the other does, and either end alone
/// is enough to keep the link moving, also against a peer of an older version.
#[derive(Clone)]
struct Outbox {
    /// Heartbeats, acks, requests: small, queued without waiting, written before bulk traffic.
    urgent: mpsc::UnboundedSender<UrgentMessage>,
    /// Log batches, snapshot chunks and anti-entropy traffic, at most [`BULK_QUEUE`] queued.
    bulk: mpsc::Sender<Message>,
}

impl Outbox {
    /// Queues a small message. A writer that ended reports it through its task, not here.
    fn urgent(&self, message: Message) {
        let _ = self.urgent.send((message, None));
    }

    /// Queues bulk traffic, waiting while the queue is full.
    async fn bulk(&self, message: Message) -> Result<(), String> {
        self.bulk
            .send(message)
            .await
            .map_err(|_| "link closed".to_string())
    }
}

/// Starts the writer task of a link; the task ends (returning why) when a send fails, and is
/// aborted when the returned guard is dropped.
fn open_outbox(
    shared: &Arc<Shared>,
    sender: Box<dyn MessageSender>,
) -> (Outbox, AbortOnDrop<String>) {
    let (urgent, urgent_queue) = mpsc::unbounded_channel();
    let (bulk, bulk_queue) = mpsc::channel(BULK_QUEUE);
    let writer = tokio::spawn(write_link(shared.clone(), sender, urgent_queue, bulk_queue));
    (Outbox { urgent, bulk }, AbortOnDrop(writer))
}

async fn write_link(
    shared: Arc<Shared>,
    mut sender: Box<dyn MessageSender>,
    mut urgent: mpsc::UnboundedReceiver<UrgentMessage>,
    mut bulk: mpsc::Receiver<Message>,
) -> String {
    let mut written: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            // Heartbeats and acks first: a peer must not time out behind a queue of repairs.
            biased;
            next = urgent.recv() => match next {
                Some(next) => next,
                None => return "link closed".into(),
            },
            next = bulk.recv() => match next {
                Some(message) => (message, None),
                None => return "link closed".into(),
            },
        };
        // Everything else already queued goes out in the same write (urgent before bulk, each
        // queue in order), up to about WRITE_COALESCE bytes; acks, which are cumulative, are
        // folded into the latest one.
        let mut ack = None;
        let mut next = Some(first);
        let mut bytes = 0;
        loop {
            if let Some((message, done)) = next.take() {
                match message {
                    Message::Ack { seq } => ack = ack.max(Some(seq)),
                    message => match sender.queue(&message) {
                        Ok(len) => bytes += len,
                        Err(error) => return format!("{}: {error}", message.name()),
                    },
                }
                written.extend(done);
            }
            if sender.queued() >= WRITE_COALESCE {
                break;
            }
            next = match urgent.try_recv() {
                Ok(message) => Some(message),
                Err(_) => match bulk.try_recv() {
                    Ok(message) => Some((message, None)),
                    Err(_) => break,
                },
            };
        }
        if let Some(seq) = ack {
            match sender.queue(&Message::Ack { seq }) {
                Ok(len) => bytes += len,
                Err(error) => return format!("ack: {error}"),
            }
        }
        if let Err(error) = sender.flush().await {
            return format!("flush: {error}");
        }
        ReplicationMetrics::add(&shared.metrics.bytes_sent, bytes as u64);
        for done in written.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Why a link task ended: its own reason, or how it failed.
fn task_ended(ended: Result<String, tokio::task::JoinError>) -> String {
    ended.unwrap_or_else(|error| format!("link task failed: {error}"))
}

/// Lists the keys of `buckets` on the blocking pool: one pass over the whole keyspace, which at
/// 1M keys on a loaded machine takes seconds that the link's tasks must spend on heartbeats.
async fn list_buckets(
    shared: &Shared,
    buckets: Vec<usize>,
) -> Result<Vec<Vec<(Bytes, Stamp)>>, String> {
    let replica = shared.replica.clone();
    tokio::task::spawn_blocking(move || replica.bucket_keys(&buckets))
        .await
        .map_err(|error| format!("listing bucket keys failed: {error}"))
}

fn validate_hello(shared: &Shared, hello: &Hello) -> Result<(), String> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (this node speaks {PROTOCOL_VERSION})",
            hello.protocol_version
        ));
    }
    if hello.cluster != shared.config.cluster {
        return Err(format!(
            "cluster {:?} (this node is in {:?})",
            hello.cluster, shared.config.cluster
        ));
    }
    Ok(())
}

fn is_self(shared: &Shared, hello: &Hello) -> bool {
    hello.node_id == shared.config.node_id || hello.node_name == shared.config.node_name
}

async fn accept_loop(shared: Arc<Shared>, mut listener: Box<dyn super::transport::Listener>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(connection) => {
                tokio::spawn(serve_inbound(shared.clone(), connection));
            }
            Err(error) => {
                warn!(%error, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The accepting side of a link: applies the dialer's batches and answers its requests.
async fn serve_inbound(shared: Arc<Shared>, connection: Connection) {
    let Connection {
        mut sender,
        mut receiver,
        remote_address,
    } = connection;
    let first = tokio::time::timeout(shared.config.peer_timeout, receiver.recv()).await;
    let peer = match first {
        Ok(Ok(Some((Message::Hello(peer), bytes)))) => {
            ReplicationMetrics::add(&shared.metrics.bytes_received, bytes as u64);
            peer
        }
        other => {
            debug!(remote = %remote_address, outcome = ?other.map(|result| result.map(|message| message.map(|(message, _)| message.name()))), "inbound peer connection without a hello");
            return;
        }
    };
    if let Err(reason) = validate_hello(&shared, &peer) {
        warn!(remote = %remote_address, peer = %peer.node_name, %reason, "refusing peer");
        return;
    }
    if is_self(&shared, &peer) {
        return;
    }
    if send(&shared, &mut sender, hello(&shared)).await.is_err() {
        return;
    }
    debug!(peer = %peer.node_name, remote = %remote_address, "inbound peer link up");
    let _inbound = InboundLink::open(&shared, &peer.node_name);
    let known = {
        let peers = shared.peers.lock();
        peers.by_address.contains_key(&peer.advertise)
            || peers.self_addresses.contains(&peer.advertise)
    };
    if !known {
        // A restarted pod has a new address that DNS may not have shown yet: look again now
        // rather than at the next period, so the link back to it comes up soon.
        shared.discover_now.notify_one();
    }
    let (outbox, mut writer) = open_outbox(&shared, sender);
    let (requests, queue) = mpsc::unbounded_channel();
    let mut answerer = AbortOnDrop(tokio::spawn(answer_requests(
        shared.clone(),
        peer.node_name.clone(),
        queue,
        outbox.clone(),
    )));
    let result = inbound_session(
        &shared,
        &peer,
        &outbox,
        &requests,
        &mut *receiver,
        [&mut writer, &mut answerer],
    )
    .await;
    match result {
        Ok(()) => debug!(peer = %peer.node_name, "inbound peer link closed"),
        Err(reason) => debug!(peer = %peer.node_name, %reason, "inbound peer link ended"),
    }
}

/// What the acceptor of a link answers, in the order asked, off its reading task.
enum Request {
    Snapshot,
    Digest(Vec<u64>),
    Repair(Vec<Bytes>),
    RoundEnd,
}

/// The reading task of an inbound link: applies batches and repairs, answers heartbeats, and
/// hands every request that needs work to [`answer_requests`], so a keyspace listing or a
/// snapshot never stops it from reading. It ends when the peer closes or times out, or when
/// one of `tasks` (the writer and the answerer) ends.
async fn inbound_session(
    shared: &Shared,
    peer: &Hello,
    outbox: &Outbox,
    requests: &mpsc::UnboundedSender<Request>,
    receiver: &mut dyn super::transport::MessageReceiver,
    tasks: [&mut AbortOnDrop<String>; 2],
) -> Result<(), String> {
    let [writer, answerer] = tasks;
    loop {
        let received = tokio::select! {
            () = shared.shutdown.cancelled() => return Ok(()),
            ended = &mut writer.0 => return Err(task_ended(ended)),
            ended = &mut answerer.0 => return Err(task_ended(ended)),
            received = tokio::time::timeout(shared.config.peer_timeout, receiver.recv()) => received,
        };
        let (message, bytes) = match received {
            Err(_) => return Err("peer timed out".into()),
            Ok(Err(error)) => return Err(error.to_string()),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(received))) => received,
        };
        ReplicationMetrics::add(&shared.metrics.bytes_received, bytes as u64);
        // Requests keep their order: a round's RoundEnd is echoed after the answers to its
        // repair requests, and after the repairs pushed before it, applied here already.
        // A failed queue means the answerer ended: reported by its task next time round.
        let request = match message {
            Message::Batch {
                first_seq,
                records,
                touches,
            } => {
                let count = (records.len() + touches.len()) as u64;
                for record in &records {
                    apply_remote(shared, record);
                }
                for touch in &touches {
                    shared.replica.apply_touch(touch);
                }
                ReplicationMetrics::add(&shared.metrics.records_received, records.len() as u64);
                ReplicationMetrics::add(&shared.metrics.touches_received, touches.len() as u64);
                if count > 0 {
                    outbox.urgent(Message::Ack {
                        seq: first_seq + count - 1,
                    });
                }
                None
            }
            Message::Heartbeat { state, .. } => {
                update_peer_by_name(shared, &peer.node_name, |entry| {
                    entry.last_seen = Some(Instant::now());
                    if state != NodeState::Left {
                        entry.left = false;
                    }
                });
                let head = shared.log.head();
                let state = *shared.state.borrow();
                outbox.urgent(Message::Heartbeat { state, head });
                None
            }
            Message::SnapshotRequest => Some(Request::Snapshot),
            Message::Digest { buckets } => Some(Request::Digest(buckets)),
            Message::RepairRequest { keys } => Some(Request::Repair(keys)),
            Message::RepairRecords { records } => {
                let applied = records
                    .iter()
                    .filter(|record| apply_remote(shared, record))
                    .count();
                ReplicationMetrics::add(&shared.metrics.repairs_applied, applied as u64);
                None
            }
            Message::RoundEnd => Some(Request::RoundEnd),
            Message::Leave => {
                info!(peer = %peer.node_name, "peer is leaving the cluster");
                update_peer_by_name(shared, &peer.node_name, |entry| {
                    entry.left = true;
                    entry.state = Some(NodeState::Left);
                });
                bump_acks(shared);
                None
            }
            other => {
                debug!(peer = %peer.node_name, message = other.name(), "unexpected message on an inbound link");
                None
            }
        };
        if let Some(request) = request {
            let _ = requests.send(request);
        }
    }
}

/// Answers an inbound link's requests one at a time, in order, through the link's bulk queue;
/// returns why it stopped.
async fn answer_requests(
    shared: Arc<Shared>,
    peer: String,
    mut requests: mpsc::UnboundedReceiver<Request>,
    outbox: Outbox,
) -> String {
    while let Some(request) = requests.recv().await {
        let answered = match request {
            Request::Snapshot => serve_snapshot(&shared, &peer, &outbox).await,
            Request::Digest(buckets) => answer_digest(&shared, &outbox, &buckets).await,
            Request::Repair(keys) => {
                let records = shared.replica.read_records(&keys);
                ReplicationMetrics::add(&shared.metrics.repairs_sent, records.len() as u64);
                send_records(&shared, &outbox, records, false).await
            }
            Request::RoundEnd => outbox.bulk(Message::RoundEnd).await,
        };
        if let Err(reason) = answered {
            return reason;
        }
    }
    "link closed".into()
}

async fn serve_snapshot(shared: &Shared, peer: &str, outbox: &Outbox) -> Result<(), String> {
    let head = shared.log.head();
    info!(peer = %peer, head, "serving a snapshot");
    let mut cursor: Option<Vec<u8>> = None;
    let mut total = 0usize;
    loop {
        let (records, next) = shared
            .replica
            .snapshot_chunk(cursor.as_deref(), shared.config.chunk_records.max(1));
        total += records.len();
        if !records.is_empty() {
            send_records(shared, outbox, records, true).await?;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    outbox.bulk(Message::SnapshotEnd { seq: head }).await?;
    ReplicationMetrics::add(&shared.metrics.snapshots_served, 1);
    info!(peer = %peer, records = total, "snapshot served");
    Ok(())
}

/// Answers a round's digests with the `(key, stamp)` lists of the differing buckets, listed a
/// group at a time on the blocking pool.
async fn answer_digest(shared: &Shared, outbox: &Outbox, buckets: &[u64]) -> Result<(), String> {
    let mine = shared.replica.bucket_digests();
    let differing: Vec<usize> = (0..BUCKETS)
        .filter(|bucket| buckets.get(*bucket) != mine.get(*bucket))
        .collect();
    for group in differing.chunks(LIST_GROUP) {
        let lists = list_buckets(shared, group.to_vec()).await?;
        for (&bucket, keys) in group.iter().zip(lists) {
            // Chunked so one huge bucket cannot exceed the frame limit.
            let mut chunks = keys
                .chunks(shared.config.chunk_records.max(1) * 4)
                .peekable();
            if chunks.peek().is_none() {
                outbox
                    .bulk(Message::BucketKeys {
                        bucket: bucket as u16,
                        keys: Vec::new(),
                        done: false,
                    })
                    .await?;
            }
            for chunk in chunks {
                outbox
                    .bulk(Message::BucketKeys {
                        bucket: bucket as u16,
                        keys: chunk.to_vec(),
                        done: false,
                    })
                    .await?;
            }
        }
    }
    outbox
        .bulk(Message::BucketKeys {
            bucket: 0,
            keys: Vec::new(),
            done: true,
        })
        .await
}

/// Counts an open inbound link of a peer (by name) while it lives.
struct InboundLink<'a> {
    shared: &'a Shared,
    name: String,
}

impl<'a> InboundLink<'a> {
    fn open(shared: &'a Shared, name: &str) -> InboundLink<'a> {
        *shared.inbound.lock().entry(name.to_string()).or_insert(0) += 1;
        InboundLink {
            shared,
            name: name.to_string(),
        }
    }
}

impl Drop for InboundLink<'_> {
    fn drop(&mut self) {
        let mut inbound = self.shared.inbound.lock();
        if let Some(count) = inbound.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                inbound.remove(&self.name);
            }
        }
    }
}

fn update_peer_by_name(shared: &Shared, name: &str, mut update: impl FnMut(&mut PeerEntry)) {
    let mut peers = shared.peers.lock();
    for entry in peers.by_address.values_mut() {
        if entry.name.as_deref() == Some(name) {
            update(entry);
        }
    }
}

async fn discovery_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.discovery_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.discover_now.notified() => {}
        }
        match shared.resolver.resolve().await {
            Ok(addresses) => reconcile_peers(&shared, addresses),
            // The previous list is kept: a DNS hiccup must not drop every peer.
            Err(error) => warn!(%error, "peer discovery failed; keeping the previous peer list"),
        }
    }
}

fn reconcile_peers(shared: &Arc<Shared>, addresses: BTreeSet<String>) {
    let mut changed = false;
    let mut peers = shared.peers.lock();
    let wanted: BTreeSet<String> = addresses
        .into_iter()
        .filter(|address| !peers.self_addresses.contains(address))
        .collect();
    let gone: Vec<String> = peers
        .by_address
        .keys()
        .filter(|address| !wanted.contains(*address))
        .cloned()
        .collect();
    for address in gone {
        if let Some(entry) = peers.by_address.remove(&address) {
            info!(peer = %address, name = ?entry.name, "peer no longer discovered");
            entry.cancel.cancel();
            changed = true;
        }
    }
    for address in wanted {
        if peers.by_address.contains_key(&address) {
            continue;
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let cancel = shared.shutdown.child_token();
        peers.by_address.insert(
            address.clone(),
            PeerEntry {
                name: None,
                node_id: None,
                connected: false,
                state: None,
                last_seen: None,
                left: false,
                last_round_started_ms: None,
                commands,
                cancel: cancel.clone(),
            },
        );
        info!(peer = %address, "peer discovered");
        tokio::spawn(run_link(shared.clone(), address, receiver, cancel));
        changed = true;
    }
    drop(peers);
    if changed {
        bump_acks(shared);
    }
}

fn with_entry<T>(
    shared: &Shared,
    address: &str,
    update: impl FnOnce(&mut PeerEntry) -> T,
) -> Option<T> {
    shared.peers.lock().by_address.get_mut(address).map(update)
}

fn set_connected(shared: &Shared, address: &str, connected: bool) {
    let changed = with_entry(shared, address, |entry| {
        let changed = entry.connected != connected;
        entry.connected = connected;
        changed
    })
    .unwrap_or(false);
    if changed {
        if connected {
            ReplicationMetrics::add(&shared.metrics.peers_up, 1);
        } else {
            shared.metrics.peers_up.fetch_sub(1, Ordering::Relaxed);
        }
        bump_acks(shared);
    }
}

/// The dialing side of a link to one discovered address, reconnecting with backoff until the
/// peer is no longer discovered.
async fn run_link(
    shared: Arc<Shared>,
    address: String,
    mut commands: mpsc::UnboundedReceiver<LinkCommand>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            connected = tokio::time::timeout(shared.config.connect_timeout, handshake(&shared, &address)) => connected,
        };
        match connected {
            Ok(Ok((connection, peer))) => {
                if is_self(&shared, &peer) {
                    info!(peer = %address, "discovered address is this node; ignoring it");
                    let mut peers = shared.peers.lock();
                    peers.self_addresses.insert(address.clone());
                    peers.by_address.remove(&address);
                    drop(peers);
                    bump_acks(&shared);
                    return;
                }
                backoff = Duration::from_millis(50);
                let reason =
                    outbound_session(&shared, &address, connection, &peer, &mut commands, &cancel)
                        .await;
                set_connected(&shared, &address, false);
                if !cancel.is_cancelled() {
                    ReplicationMetrics::add(&shared.metrics.links_dropped, 1);
                    info!(peer = %peer.node_name, address = %address, %reason, "peer link down");
                }
            }
            Ok(Err(reason)) => debug!(peer = %address, %reason, "peer connection failed"),
            Err(_) => debug!(peer = %address, "peer connection timed out"),
        }
        // Fail pending commands instead of leaving their callers waiting.
        while let Ok(command) = commands.try_recv() {
            drop(command);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(shared.config.reconnect_max_backoff);
    }
}

async fn handshake(shared: &Shared, address: &str) -> Result<(Connection, Hello), String> {
    let mut connection = shared
        .transport
        .connect(address)
        .await
        .map_err(|error| error.to_string())?;
    send(shared, &mut connection.sender, hello(shared)).await?;
    match connection.receiver.recv().await {
        Ok(Some((Message::Hello(peer), bytes))) => {
            ReplicationMetrics::add(&shared.metrics.bytes_received, bytes as u64);
            validate_hello(shared, &peer)?;
            Ok((connection, peer))
        }
        Ok(Some((other, _))) => Err(format!("expected hello, got {}", other.name())),
        Ok(None) => Err("closed during the handshake".into()),
        Err(error) => Err(error.to_string()),
    }
}

struct Round {
    horizon: u64,
    started_ms: u64,
    theirs: BTreeMap<u16, Vec<(Bytes, Stamp)>>,
    waiting_for_end: bool,
    /// The task comparing and repairing, once the peer's lists are in.
    repair: Option<AbortOnDrop<()>>,
}

/// The pushing side of a connected link: streams the log, heartbeats, drives snapshots and
/// anti-entropy rounds. It never waits for the socket (see [`Outbox`]) and leaves the work of
/// a round to a task of its own, so it keeps reading and heartbeating whatever a round costs.
/// Returns why it ended.
async fn outbound_session(
    shared: &Arc<Shared>,
    address: &str,
    connection: Connection,
    peer: &Hello,
    commands: &mut mpsc::UnboundedReceiver<LinkCommand>,
    cancel: &CancellationToken,
) -> String {
    let Connection {
        sender,
        mut receiver,
        ..
    } = connection;
    let name = peer.node_name.clone();
    let mut remote_state = peer.state;
    let head = shared.log.head();
    let first = shared.log.first_seq();
    let (mut next, gap) = {
        let mut peers = shared.peers.lock();
        if let Some(entry) = peers.by_address.get_mut(address) {
            entry.name = Some(name.clone());
            entry.node_id = Some(peer.node_id);
            entry.state = Some(peer.state);
            entry.last_seen = Some(Instant::now());
            entry.left = false;
        }
        let (node_id, cursor) = peers
            .cursors
            .entry(name.clone())
            .or_insert((peer.node_id, PeerCursor::default()));
        if *node_id != peer.node_id {
            // A new incarnation (a restarted ram-mode node) holds nothing of ours.
            *node_id = peer.node_id;
            *cursor = PeerCursor::default();
        }
        let resume = cursor.synced + 1;
        // A loading peer gets a snapshot; pushing the whole log to it would be wasted.
        let start = if peer.state != NodeState::Loading && resume >= first {
            resume
        } else {
            head + 1
        };
        let gap = cursor.start_stream(start);
        (start, gap)
    };
    set_connected(shared, address, true);
    info!(peer = %name, address = %address, state = peer.state.as_str(), from_seq = next, gap, "peer link up");

    let (incoming_sender, mut incoming) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        loop {
            match receiver.recv().await {
                Ok(Some(received)) => {
                    if incoming_sender.send(received).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let _reader_guard = AbortOnDrop(reader);
    let (outbox, mut writer) = open_outbox(shared, sender);
    let (repair_failures, mut repair_failed) = mpsc::unbounded_channel::<String>();

    let mut head_changes = shared.log.subscribe();
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat_interval);
    let mut anti_entropy = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.config.anti_entropy_interval,
        shared.config.anti_entropy_interval,
    );
    let mut last_heard = Instant::now();
    let mut round_wanted = gap && remote_state != NodeState::Loading;
    let mut round: Option<Round> = None;
    let mut round_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut snapshot: Option<(oneshot::Sender<u64>, u64)> = None;

    loop {
        if round_wanted
            && round.is_none()
            && matches!(remote_state, NodeState::Ready | NodeState::Leaving)
        {
            round_wanted = false;
            let horizon = shared.log.head();
            let started_ms = wall_ms(shared);
            let buckets = shared.replica.bucket_digests();
            outbox.urgent(Message::Digest { buckets });
            round = Some(Round {
                horizon,
                started_ms,
                theirs: BTreeMap::new(),
                waiting_for_end: false,
                repair: None,
            });
        }
        head_changes.borrow_and_update();
        let pending = next <= shared.log.head();
        tokio::select! {
            () = cancel.cancelled() => return "peer removed".into(),
            ended = &mut writer.0 => return task_ended(ended),
            Some(reason) = repair_failed.recv() => return format!("anti-entropy repair failed: {reason}"),
            received = incoming.recv() => {
                let Some((message, bytes)) = received else {
                    return "connection closed".into();
                };
                last_heard = Instant::now();
                ReplicationMetrics::add(&shared.metrics.bytes_received, bytes as u64);
                match message {
                    Message::Ack { seq } => {
                        {
                            let mut peers = shared.peers.lock();
                            if let Some((_, cursor)) = peers.cursors.get_mut(&name) {
                                cursor.ack(seq);
                            }
                            shared.log.release_through(held_by_every_member(&peers));
                        }
                        bump_acks(shared);
                    }
                    Message::Heartbeat { state, .. } => {
                        if remote_state == NodeState::Loading && state == NodeState::Ready {
                            // It finished bootstrapping; close any gap now rather than at the next period.
                            let has_gap = shared.peers.lock().cursors.get(&name).is_some_and(|(_, cursor)| cursor.has_gap());
                            round_wanted |= has_gap;
                        }
                        remote_state = state;
                        with_entry(shared, address, |entry| {
                            entry.state = Some(state);
                            entry.last_seen = Some(Instant::now());
                        });
                    }
                    Message::SnapshotChunk { records } => {
                        for record in &records {
                            apply_remote(shared, record);
                        }
                        ReplicationMetrics::add(&shared.metrics.snapshot_records_received, records.len() as u64);
                        if let Some((_, count)) = snapshot.as_mut() {
                            *count += records.len() as u64;
                        }
                    }
                    Message::SnapshotEnd { seq } => {
                        if let Some((reply, count)) = snapshot.take() {
                            info!(peer = %name, records = count, seq, "snapshot received");
                            let _ = reply.send(count);
                        }
                    }
                    Message::BucketKeys { bucket, keys, done } => {
                        let Some(current) = round.as_mut() else {
                            continue;
                        };
                        if !done {
                            current.theirs.entry(bucket).or_default().extend(keys);
                            continue;
                        }
                        let theirs = std::mem::take(&mut current.theirs);
                        current.waiting_for_end = true;
                        let (shared, outbox, failures) = (shared.clone(), outbox.clone(), repair_failures.clone());
                        current.repair = Some(AbortOnDrop(tokio::spawn(async move {
                            if let Err(reason) = repair(&shared, &outbox, theirs).await {
                                let _ = failures.send(reason);
                            }
                        })));
                    }
                    Message::RepairRecords { records } => {
                        let applied = records.iter().filter(|record| apply_remote(shared, record)).count();
                        ReplicationMetrics::add(&shared.metrics.repairs_applied, applied as u64);
                    }
                    Message::RoundEnd => {
                        if let Some(done) = round.take().filter(|current| current.waiting_for_end) {
                            {
                                let mut peers = shared.peers.lock();
                                if let Some((_, cursor)) = peers.cursors.get_mut(&name) {
                                    cursor.synced_to(done.horizon);
                                }
                                if let Some(entry) = peers.by_address.get_mut(address) {
                                    entry.last_round_started_ms = Some(done.started_ms);
                                }
                                shared.log.release_through(held_by_every_member(&peers));
                            }
                            ReplicationMetrics::add(&shared.metrics.anti_entropy_rounds, 1);
                            bump_acks(shared);
                            for waiter in round_waiters.drain(..) {
                                let _ = waiter.send(());
                            }
                        }
                    }
                    other => debug!(peer = %name, message = other.name(), "unexpected message on an outbound link"),
                }
            }
            // Only with room in the bulk queue: this task must never wait for the socket.
            permit = outbox.bulk.reserve(), if pending => {
                // A closed queue means the writer ended: reported by its branch next time round.
                let Ok(permit) = permit else { continue };
                match shared.log.read(next, shared.config.batch_max_items, shared.config.batch_max_bytes) {
                    Ok(items) => {
                        let Some((last, _)) = items.last() else { continue };
                        let last = *last;
                        let mut records = Vec::new();
                        let mut touches = Vec::new();
                        for (_, item) in items {
                            match item {
                                // Cannot fit in a frame: sending it would break the link forever.
                                // A stamp-0 tombstone takes its place: it loses against everything,
                                // so it changes nothing, but the batch's sequence stays contiguous.
                                item if item.size() > shared.config.max_frame / 2 => {
                                    warn!(peer = %name, "record too large to replicate; skipped");
                                    ReplicationMetrics::add(&shared.metrics.records_too_large, 1);
                                    records.push(match item {
                                        LogItem::Record(record) => Record::tombstone(record.key, Stamp { hlc: 0, origin: 0 }, 0),
                                        LogItem::Touch(touch) => Record::tombstone(touch.key, Stamp { hlc: 0, origin: 0 }, 0),
                                    });
                                }
                                LogItem::Record(record) => records.push(record),
                                LogItem::Touch(touch) => touches.push(touch),
                            }
                        }
                        let (record_count, touch_count) = (records.len() as u64, touches.len() as u64);
                        permit.send(Message::Batch { first_seq: next, records, touches });
                        ReplicationMetrics::add(&shared.metrics.records_sent, record_count);
                        ReplicationMetrics::add(&shared.metrics.touches_sent, touch_count);
                        next = last + 1;
                    }
                    Err(truncated) => {
                        warn!(peer = %name, %truncated, "peer fell behind the op-log; repairing by anti-entropy");
                        next = shared.log.head() + 1;
                        if let Some((_, cursor)) = shared.peers.lock().cursors.get_mut(&name) {
                            cursor.start_stream(next);
                        }
                        round_wanted = true;
                    }
                }
            }
            _ = head_changes.changed() => {
                // Let the other runnable tasks (client connections writing right now) append
                // theirs before the batch is read: woken by the first append, this task would
                // otherwise run next and push one write per batch.
                tokio::task::yield_now().await;
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > shared.config.peer_timeout {
                    return "peer timed out".into();
                }
                let state = *shared.state.borrow();
                outbox.urgent(Message::Heartbeat { state, head: shared.log.head() });
            }
            _ = anti_entropy.tick() => {
                if *shared.state.borrow() == NodeState::Ready {
                    round_wanted = true;
                }
            }
            command = commands.recv() => match command {
                None => return "link closed".into(),
                Some(LinkCommand::Snapshot(reply)) => {
                    outbox.urgent(Message::SnapshotRequest);
                    snapshot = Some((reply, 0));
                }
                Some(LinkCommand::Round(reply)) => {
                    round_wanted = true;
                    round_waiters.push(reply);
                }
                Some(LinkCommand::Leave(reply)) => {
                    // Answered once written (or dropped if the link fails first).
                    let _ = outbox.urgent.send((Message::Leave, Some(reply)));
                }
            },
        }
    }
}

/// Aborts a link's task (reader, writer, answerer, repair) when the session ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Compares the peer's keys of the differing buckets with ours: pushes what we have newer or
/// they lack, asks for what they have newer or we lack, then ends the round. Runs in a task of
/// its own, a group of buckets at a time, listing and comparing on the blocking pool; the link
/// keeps reading (the answers to its requests, heartbeats) meanwhile.
async fn repair(
    shared: &Shared,
    outbox: &Outbox,
    theirs: BTreeMap<u16, Vec<(Bytes, Stamp)>>,
) -> Result<(), String> {
    let mut theirs = theirs.into_iter().peekable();
    while theirs.peek().is_some() {
        let group: Vec<(u16, Vec<(Bytes, Stamp)>)> = theirs.by_ref().take(LIST_GROUP).collect();
        let replica = shared.replica.clone();
        let (records, want) = tokio::task::spawn_blocking(move || {
            let buckets: Vec<usize> = group.iter().map(|(bucket, _)| *bucket as usize).collect();
            let lists = replica.bucket_keys(&buckets);
            let (mut push, mut want) = (Vec::new(), Vec::new());
            for ((_, their_keys), mine) in group.iter().zip(lists) {
                compare_bucket(mine, their_keys, &mut push, &mut want);
            }
            (replica.read_records(&push), want)
        })
        .await
        .map_err(|error| format!("comparing bucket keys failed: {error}"))?;
        if !records.is_empty() {
            ReplicationMetrics::add(&shared.metrics.repairs_sent, records.len() as u64);
            send_records(shared, outbox, records, false).await?;
        }
        for keys in want.chunks(shared.config.chunk_records.max(1) * 4) {
            outbox
                .bulk(Message::RepairRequest {
                    keys: keys.to_vec(),
                })
                .await?;
        }
    }
    outbox.bulk(Message::RoundEnd).await
}

/// One bucket of a round: the keys to push (ours newer, or theirs absent) and to request
/// (theirs newer, or ours absent).
fn compare_bucket(
    mine: Vec<(Bytes, Stamp)>,
    theirs: &[(Bytes, Stamp)],
    push: &mut Vec<Bytes>,
    want: &mut Vec<Bytes>,
) {
    let mine: HashMap<Bytes, Stamp> = mine.into_iter().collect();
    let their_map: HashMap<&Bytes, Stamp> =
        theirs.iter().map(|(key, stamp)| (key, *stamp)).collect();
    for (key, stamp) in &mine {
        match their_map.get(key) {
            Some(theirs) if theirs >= stamp => {}
            _ => push.push(key.clone()),
        }
    }
    for (key, stamp) in theirs {
        match mine.get(key) {
            Some(mine) if mine >= stamp => {}
            _ => want.push(key.clone()),
        }
    }
}

fn connected_ready_peers(
    shared: &Shared,
) -> Vec<(String, StartPeer, mpsc::UnboundedSender<LinkCommand>)> {
    shared
        .peers
        .lock()
        .by_address
        .iter()
        .filter(|(_, entry)| entry.connected && !entry.left)
        .filter_map(|(address, entry)| {
            Some((
                address.clone(),
                StartPeer {
                    name: entry.name.clone()?,
                    state: entry.state?,
                },
                entry.commands.clone(),
            ))
        })
        .collect()
}

/// Runs one anti-entropy round with every connected ready peer, bounded by `timeout`.
async fn run_rounds(shared: &Shared, timeout: Duration) -> usize {
    let mut waits = Vec::new();
    for (_, peer, commands) in connected_ready_peers(shared) {
        if peer.state != NodeState::Ready {
            continue;
        }
        let (reply, wait) = oneshot::channel();
        if commands.send(LinkCommand::Round(reply)).is_ok() {
            waits.push(wait);
        }
    }
    match tokio::time::timeout(timeout, futures::future::join_all(waits)).await {
        Ok(results) => results.into_iter().filter(|result| result.is_ok()).count(),
        Err(_) => 0,
    }
}

/// Applies the first-start rule until the node is ready.
async fn bootstrap(shared: Arc<Shared>) {
    let started = Instant::now();
    // Data held at start (recovered from disc), not what the live streams bring meanwhile:
    // those would otherwise turn an empty node into one that skips its snapshot.
    let had_data = !shared.replica.is_empty();
    let mut last_reason = String::new();
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let peers = connected_ready_peers(&shared);
        let views: Vec<StartPeer> = peers.iter().map(|(_, peer, _)| peer.clone()).collect();
        let decision = decide_start(
            &shared.config.node_name,
            had_data,
            shared.resolver.has_sources(),
            &views,
            started.elapsed() >= shared.config.first_start_wait,
        );
        let round_timeout = shared.config.peer_timeout * 4;
        match decision {
            StartDecision::Seed(reason) => {
                info!(node = %shared.config.node_name, %reason, "ready");
                set_state(&shared, NodeState::Ready, None);
                return;
            }
            StartDecision::CatchUp => {
                *shared.reason.lock() = Some("loading: catching up with peers".into());
                let rounds = run_rounds(&shared, round_timeout).await;
                wait_for_links_back(&shared).await;
                info!(node = %shared.config.node_name, rounds, "caught up with peers; ready");
                set_state(&shared, NodeState::Ready, None);
                return;
            }
            StartDecision::Bootstrap(source) => {
                *shared.reason.lock() =
                    Some(format!("loading: streaming a snapshot from {source}"));
                info!(node = %shared.config.node_name, %source, "bootstrapping from a snapshot");
                let Some((_, _, commands)) = peers.iter().find(|(_, peer, _)| peer.name == source)
                else {
                    continue;
                };
                let (reply, wait) = oneshot::channel();
                if commands.send(LinkCommand::Snapshot(reply)).is_err() {
                    continue;
                }
                match wait.await {
                    Ok(records) => {
                        *shared.reason.lock() = Some(format!("loading: snapshot of {records} records received, reconciling with peers"));
                        let rounds = run_rounds(&shared, round_timeout).await;
                        wait_for_links_back(&shared).await;
                        info!(node = %shared.config.node_name, records, rounds, "bootstrap complete; ready");
                        set_state(&shared, NodeState::Ready, None);
                        return;
                    }
                    Err(_) => {
                        warn!(node = %shared.config.node_name, %source, "snapshot interrupted; retrying");
                    }
                }
            }
            StartDecision::Wait(reason) => {
                if reason != last_reason {
                    info!(node = %shared.config.node_name, %reason, "waiting before serving");
                    last_reason = reason.clone();
                }
                *shared.reason.lock() = Some(format!("loading: {reason}"));
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Before a starting node reports ready: waits, at most `links_back_wait`, until every
/// connected ready peer has dialed this node too. A peer's writes reach this node only over
/// that link, so until it is up the peer cannot count this node for `--write-ack`. A rolling
/// restart stops the next node as soon as this one is ready: if this node were ready before
/// the links back, a peer that just lost the stopped node could have no member acknowledging
/// its writes and answer `NOREPLICAS` (seen in the e2e rolling restart, where a restarted pod
/// has a new address that peers learn only from DNS).
async fn wait_for_links_back(shared: &Shared) {
    let deadline = Instant::now() + shared.config.links_back_wait;
    loop {
        let missing: Vec<String> = connected_ready_peers(shared)
            .into_iter()
            .filter(|(_, peer, _)| peer.state == NodeState::Ready)
            .map(|(_, peer, _)| peer.name)
            .filter(|name| !shared.inbound.lock().contains_key(name))
            .collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            warn!(peers = ?missing, "ready although these peers have not connected back: their clients may get NOREPLICAS until they do");
            return;
        }
        *shared.reason.lock() = Some(format!(
            "loading: waiting for {} to connect back",
            missing.join(", ")
        ));
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

async fn touch_flusher(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.touch_flush_interval);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => flush_touches(&shared),
        }
    }
}

/// The tombstone collection cutoff: older than the grace period, and older by the grace period
/// than the start of the last completed anti-entropy round with every member peer (a member
/// never synced blocks collection). `now` when there are no members.
fn collection_cutoff(shared: &Shared) -> u64 {
    let now = wall_ms(shared);
    let grace = shared.config.tombstone_grace.as_millis() as u64;
    let peers = shared.peers.lock();
    let horizon = peers
        .by_address
        .values()
        .filter(|entry| !entry.left)
        .map(|entry| entry.last_round_started_ms.unwrap_or(0))
        .min()
        .unwrap_or(now);
    horizon.min(now).saturating_sub(grace)
}

async fn tombstone_collector(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.tombstone_gc_interval);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let cutoff = collection_cutoff(&shared);
                if cutoff > 0 {
                    let collected = shared.replica.collect_tombstones(cutoff);
                    if collected > 0 {
                        debug!(collected, cutoff, "tombstones collected");
                        ReplicationMetrics::add(&shared.metrics.tombstones_collected, collected as u64);
                    }
                }
            }
        }
    }
}
