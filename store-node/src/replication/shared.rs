//! The state every replication task shares ([`Shared`]): the configuration, the replica, the
//! clock, the op-log, pending touches and the peer table ([`Peers`]: one [`PeerEntry`] per
//! discovered address, and the replication cursors by peer name), with the few operations on it
//! that several jobs need (state changes, ack notifications, applying a remote record, the
//! connected ready peers, what every member holds).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::clock::{cluster_offset, physical_ms, ClockSamples, HybridClock};
use super::config::ReplicationConfig;
use super::link::publish::Publications;
use super::membership::{PeerResolver, StartPeer};
use super::metrics::ReplicationMetrics;
use super::oplog::{OpLog, PeerCursor};
use super::replica::Replica;
use super::transport::Transport;
use super::wire::NodeState;
use crate::store::{Record, Touch};

/// What the handle, bootstrap and anti-entropy ask of a running outgoing link; each carries
/// the channel its answer comes back on (dropped, unanswered, when the link goes down).
pub(crate) enum LinkCommand {
    /// Stream a snapshot from the peer; answered with the number of records received.
    Snapshot(oneshot::Sender<u64>),
    /// Run an anti-entropy round now; answered when it completes.
    Round(oneshot::Sender<()>),
    /// Tell the peer this node leaves; answered once the message is written.
    Leave(oneshot::Sender<()>),
}

/// One discovered peer address and what is known of the node behind it.
pub(crate) struct PeerEntry {
    /// The peer's node name, once a handshake told it.
    pub(crate) name: Option<String>,
    /// The peer's incarnation id, once a handshake told it.
    pub(crate) node_id: Option<u32>,
    /// Whether the outgoing link is up.
    pub(crate) connected: bool,
    /// The peer's last announced state.
    pub(crate) state: Option<NodeState>,
    /// Whether the peer held data when the link came up (its hello).
    pub(crate) has_data: bool,
    /// When the peer was last heard from.
    pub(crate) last_seen: Option<Instant>,
    /// Whether the peer announced it left the cluster (it then no longer counts as a member).
    pub(crate) left: bool,
    /// Whether the peer's last heartbeat announced its memory alarm.
    pub(crate) memory_alarm: bool,
    /// Wall ms at which the last completed anti-entropy round with this peer started.
    pub(crate) last_round_started_ms: Option<u64>,
    /// Measurements of the peer's clock, from the answers to this link's heartbeats.
    pub(crate) clock: ClockSamples,
    /// Commands to the outgoing link's task.
    pub(crate) commands: mpsc::UnboundedSender<LinkCommand>,
    /// Stops the outgoing link's task when the address is no longer discovered.
    pub(crate) cancel: CancellationToken,
}

/// The peer table.
#[derive(Default)]
pub(crate) struct Peers {
    /// Every discovered peer address, this node's own excluded.
    pub(crate) by_address: BTreeMap<String, PeerEntry>,
    /// The addresses that reach this node, skipped by discovery.
    pub(crate) self_addresses: HashSet<String>,
    /// Keyed by peer name: survives reconnections and address changes.
    pub(crate) cursors: HashMap<String, (u32, PeerCursor)>,
    /// The peers (name, incarnation id) this node completed an anti-entropy round with since
    /// it started: a link to any other peer when either side holds data starts with a round,
    /// because data recovered from disc (or that came through other peers) is in no op-log.
    pub(crate) rounds_completed: HashSet<(String, u32)>,
}

/// The state of one node's replication, shared by the handle and every background task.
pub(crate) struct Shared {
    /// The tunables.
    pub(crate) config: ReplicationConfig,
    /// The local store.
    pub(crate) replica: Arc<dyn Replica>,
    /// How peers are reached.
    pub(crate) transport: Arc<dyn Transport>,
    /// Where peer addresses come from.
    pub(crate) resolver: Arc<dyn PeerResolver>,
    /// Stamps local writes and adopts remote ones.
    pub(crate) clock: HybridClock,
    /// Local writes and flushed touches, to push to every peer.
    pub(crate) log: OpLog,
    /// Touches waiting for the next flush, coalesced per key.
    pub(crate) pending_touches: Mutex<HashMap<Bytes, Touch>>,
    /// The peer table.
    pub(crate) peers: Mutex<Peers>,
    /// Open inbound links by peer name: the peers that push their writes to this node.
    pub(crate) inbound: Mutex<HashMap<String, usize>>,
    /// Wakes discovery before its next period (a peer dialed in from an unknown address).
    pub(crate) discover_now: Notify,
    /// Bumped whenever an ack, a round or the membership changes.
    pub(crate) acks: watch::Sender<u64>,
    /// `loading`, `ready`, `leaving` or `left`.
    pub(crate) state: watch::Sender<NodeState>,
    /// This node's memory alarm, announced in every heartbeat (and at once when it changes).
    pub(crate) memory_alarm: watch::Sender<bool>,
    /// Whether `state` is `loading`, read by every client command (an atomic: the watch's lock
    /// would be taken by every command of every connection thread).
    pub(crate) loading: AtomicBool,
    /// Why the node is not ready, `None` when ready.
    pub(crate) reason: Mutex<Option<String>>,
    /// The counters.
    pub(crate) metrics: ReplicationMetrics,
    /// Stops every background task.
    pub(crate) shutdown: CancellationToken,
    /// The bound peer address.
    pub(crate) local_address: String,
    /// `PUBLISH` to and from the peers.
    pub(crate) publications: Publications,
    /// Peers refused at the handshake (`peer reason`), warned about once.
    pub(crate) refused: Mutex<HashSet<String>>,
    /// Each live link's count of messages in its outbox (see `link::outbox`).
    pub(crate) outbox_gauges: Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>>,
}

/// Messages queued in the outboxes of every live link.
pub(crate) fn outbox_messages(shared: &Shared) -> u64 {
    shared
        .outbox_gauges
        .lock()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .map(|gauge| gauge.load(Ordering::Relaxed))
        .sum()
}

/// Moves the node to `state`, with why it is not ready (`None` when ready).
pub(crate) fn set_state(shared: &Shared, state: NodeState, reason: Option<String>) {
    *shared.reason.lock() = reason;
    shared
        .loading
        .store(state == NodeState::Loading, Ordering::Relaxed);
    shared.state.send_replace(state);
}

/// Wakes every waiter on acks (write acks, leaving).
pub(crate) fn bump_acks(shared: &Shared) {
    shared
        .acks
        .send_modify(|version| *version = version.wrapping_add(1));
}

/// Takes in one measurement of the clock of the peer at `address` (see
/// [`ClockSamples::add`]) and sets this node's clock correction from every connected peer's
/// estimate (one per peer name: a peer may be listed at two addresses while DNS catches up).
pub(crate) fn record_clock_sample(
    shared: &Shared,
    address: &str,
    sent_ms: u64,
    peer_ms: u64,
    received_ms: u64,
) {
    let offsets: Vec<i64> = {
        let mut peers = shared.peers.lock();
        let Some(entry) = peers.by_address.get_mut(address) else {
            return;
        };
        if !entry.clock.add(sent_ms, peer_ms, received_ms) {
            return;
        }
        let mut by_name: BTreeMap<&str, i64> = BTreeMap::new();
        for entry in peers
            .by_address
            .values()
            .filter(|entry| entry.connected && !entry.left)
        {
            if let (Some(name), Some(offset)) = (entry.name.as_deref(), entry.clock.offset_ms()) {
                by_name.insert(name, offset);
            }
        }
        by_name.into_values().collect()
    };
    shared.clock.set_correction(cluster_offset(&offsets));
}

/// The wall clock in Unix ms.
pub(crate) fn wall_ms(shared: &Shared) -> u64 {
    shared.clock.wall_ms()
}

/// Applies a remote record: adopts its clock, merges it by the replica's rules. A record
/// stamped further ahead of cluster time than the drift bound is refused (not applied,
/// counted, logged at most every 10 s): it comes from a node whose clock jumped ahead, and
/// applied it would win over every write made on this key until the clocks caught up with it.
pub(crate) fn apply_remote(shared: &Shared, record: &Record) -> bool {
    if shared.clock.beyond_bound(record.stamp().hlc) {
        ReplicationMetrics::add(&shared.metrics.records_refused_clock_skew, 1);
        let now = shared.clock.cluster_ms();
        let last = shared.metrics.refusal_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && shared
                .metrics
                .refusal_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                origin = record.stamp().origin,
                ahead_ms = physical_ms(record.stamp().hlc).saturating_sub(now),
                max_drift_ms = shared.config.max_clock_drift.as_millis() as u64,
                "refusing a record stamped beyond the clock drift bound (a peer's clock jumped ahead)"
            );
        }
        return false;
    }
    if !shared.clock.observe(record.stamp().hlc) {
        debug!(
            origin = record.stamp().origin,
            "remote stamp too far ahead of the wall clock; not adopted"
        );
    }
    let now = wall_ms(shared);
    let forget_before = now.saturating_sub(shared.config.tombstone_grace.as_millis() as u64);
    shared.replica.apply(record, now, forget_before)
}

/// Whether this node or a connected peer announces its memory alarm: tombstones are then
/// collected sooner, and anti-entropy rounds come more often to let them go.
pub(crate) fn under_memory_pressure(shared: &Shared) -> bool {
    *shared.memory_alarm.borrow()
        || shared
            .peers
            .lock()
            .by_address
            .values()
            .any(|entry| entry.connected && entry.memory_alarm)
}

/// Updates the entry of `address`, if it is still discovered.
pub(crate) fn with_entry<T>(
    shared: &Shared,
    address: &str,
    update: impl FnOnce(&mut PeerEntry) -> T,
) -> Option<T> {
    shared.peers.lock().by_address.get_mut(address).map(update)
}

/// Updates every entry of the peer named `name` (a peer may be discovered at two addresses
/// while DNS catches up with a restart).
pub(crate) fn update_peer_by_name(
    shared: &Shared,
    name: &str,
    mut update: impl FnMut(&mut PeerEntry),
) {
    let mut peers = shared.peers.lock();
    for entry in peers.by_address.values_mut() {
        if entry.name.as_deref() == Some(name) {
            update(entry);
        }
    }
}

/// Records whether the outgoing link to `address` is up, in the entry and the `peers_up` gauge.
pub(crate) fn set_connected(shared: &Shared, address: &str, connected: bool) {
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

/// The peers with an outgoing link up that did not leave and told their name and state: their
/// address, their view for the first-start rule, and their link's command channel.
pub(crate) fn connected_ready_peers(
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
                    has_data: entry.has_data,
                },
                entry.commands.clone(),
            ))
        })
        .collect()
}

/// Whether every discovered peer that has not left has its outgoing link up and told its
/// name and state (false with no peer discovered yet).
pub(crate) fn all_peers_connected(shared: &Shared) -> bool {
    let peers = shared.peers.lock();
    let mut members = peers
        .by_address
        .values()
        .filter(|entry| !entry.left)
        .peekable();
    members.peek().is_some()
        && members.all(|entry| entry.connected && entry.name.is_some() && entry.state.is_some())
}

/// The highest log sequence up to which every member holds everything (members are discovered
/// peers that did not leave); 0 when there is no member, or when one holds nothing known yet
/// (not yet reached, or a new incarnation).
pub(crate) fn held_by_every_member(peers: &Peers) -> u64 {
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
