//! The dialing side of links: one task per discovered address dials the peer, redialling with
//! backoff, and while connected pushes the op-log in batches, heartbeats, receives snapshots it
//! asked for and drives anti-entropy rounds; the peer's acks move its cursor, which
//! `--write-ack` and the op-log's release wait on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::LinkError;
use super::handshake::{handshake, is_self, note_refusal};
use super::outbox::{open_outbox, task_ended, wait_for_room, AbortOnDrop};
use super::publish::Carrier;
use crate::replication::anti_entropy::Round;
use crate::replication::metrics::ReplicationMetrics;
use crate::replication::oplog::{LogItem, PeerCursor};
use crate::replication::shared::{
    apply_remote, bump_acks, held_by_every_member, record_clock_sample, set_connected,
    under_memory_pressure, with_entry, LinkCommand, Shared,
};
use crate::replication::transport::Connection;
use crate::replication::wire::{Hello, Message, NodeState};
use crate::store::{Record, Touch};

/// How often a link runs an anti-entropy round while this node or a peer is in memory alarm
/// (instead of `anti_entropy_interval`): tombstones are collected once every member completed
/// a round after them (`replication/tombstones.rs`).
const PRESSURE_ROUND_INTERVAL: Duration = Duration::from_secs(2);

/// The dialing side of a link to one discovered address, reconnecting with backoff until the
/// peer is no longer discovered.
pub(crate) async fn run_link(
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
            Ok(Err(reason)) if reason.is_refusal() => {
                note_refusal(&shared, &address, &reason.to_string());
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

/// The pushing side of a connected link: streams the log, heartbeats, drives snapshots and
/// anti-entropy rounds. It never waits for the socket (see
/// [`Outbox`](super::outbox::Outbox)) and leaves the work of a round to a task of its own, so
/// it keeps reading and heartbeating whatever a round costs. Returns why it ended.
async fn outbound_session(
    shared: &Arc<Shared>,
    address: &str,
    connection: Connection,
    peer: &Hello,
    commands: &mut mpsc::UnboundedReceiver<LinkCommand>,
    cancel: &CancellationToken,
) -> LinkError {
    let Connection {
        sender,
        mut receiver,
        ..
    } = connection;
    let name = peer.node_name.clone();
    let mut remote_state = peer.state;
    let head = shared.log.head();
    let first = shared.log.first_seq();
    let local_data = !shared.replica.is_empty();
    let (mut next, gap, data_round) = {
        let mut peers = shared.peers.lock();
        if let Some(entry) = peers.by_address.get_mut(address) {
            if entry.node_id != Some(peer.node_id) {
                // Another process behind the address: its clock is measured afresh.
                entry.clock = Default::default();
            }
            entry.name = Some(name.clone());
            entry.node_id = Some(peer.node_id);
            entry.state = Some(peer.state);
            entry.has_data = peer.has_data;
            entry.last_seen = Some(Instant::now());
            entry.left = false;
        }
        // Data this node recovered from disc (or that the peer did) is in no op-log: until a
        // round with this incarnation of the peer completed, only a round can tell what either
        // side lacks. Without it, after a whole-cluster restart every link would come up
        // "without a gap" and a node that was behind would stay behind until the periodic round.
        // An empty loading node gets its peers' data by its own bootstrap (a snapshot, then a
        // round with each): no round here.
        let bootstrapping = !local_data && *shared.state.borrow() == NodeState::Loading;
        let data_round = (local_data || (peer.has_data && !bootstrapping))
            && !peers
                .rounds_completed
                .contains(&(name.clone(), peer.node_id));
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
        (start, gap, data_round)
    };
    set_connected(shared, address, true);
    info!(peer = %name, address = %address, state = peer.state.as_str(), from_seq = next, gap, data_round, "peer link up");

    let (incoming_sender, mut incoming) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        loop {
            match receiver.recv().await {
                Ok(Some(received)) => {
                    if incoming_sender.send(Ok(received)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    let _ = incoming_sender.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    let _reader_guard = AbortOnDrop(reader);
    let (outbox, mut writer) = open_outbox(shared, &name, sender);
    let (repair_failures, mut repair_failed) = mpsc::unbounded_channel::<LinkError>();

    let mut publications = shared.publications.subscribe();
    let carrier = Carrier::new(&shared.publications, (name.clone(), peer.node_id));
    let mut head_changes = shared.log.subscribe();
    let mut memory_alarm_changes = shared.memory_alarm.subscribe();
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat_interval);
    let mut anti_entropy = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.config.anti_entropy_interval,
        shared.config.anti_entropy_interval,
    );
    let mut last_heard = Instant::now();
    // A round can run at once with a ready peer or a loading one that holds data; an empty
    // loading peer gets a snapshot, and its round when it reports ready (below).
    let mut round_wanted =
        (gap || data_round) && (remote_state != NodeState::Loading || peer.has_data);
    let mut round: Option<Round> = None;
    let mut round_started = Instant::now();
    let mut round_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut snapshot: Option<(oneshot::Sender<u64>, u64)> = None;

    loop {
        if round_wanted
            && round.is_none()
            && (matches!(remote_state, NodeState::Ready | NodeState::Leaving)
                || (remote_state == NodeState::Loading && peer.has_data))
        {
            round_wanted = false;
            round_started = Instant::now();
            round = Some(Round::start(shared, &outbox));
        }
        head_changes.borrow_and_update();
        let pending = next <= shared.log.head();
        tokio::select! {
            () = cancel.cancelled() => return LinkError::Cancelled { peer: name },
            ended = &mut writer.0 => return task_ended(&name, "writer", ended),
            Some(error) = repair_failed.recv() => return LinkError::Repair { source: Box::new(error) },
            received = incoming.recv() => {
                let (message, bytes) = match received {
                    Some(Ok(received)) => received,
                    Some(Err(source)) => return LinkError::Receive { peer: name, source },
                    None => return LinkError::PeerClosed { peer: name },
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
                    Message::Heartbeat { state, wall_ms, echo_ms, memory_alarm, .. } => {
                        if echo_ms != 0 {
                            record_clock_sample(shared, address, echo_ms, wall_ms, shared.clock.wall_ms());
                        }
                        if remote_state == NodeState::Loading && state == NodeState::Ready {
                            // It finished bootstrapping; close any gap now rather than at the next period.
                            let peers = shared.peers.lock();
                            let has_gap = peers.cursors.get(&name).is_some_and(|(_, cursor)| cursor.has_gap());
                            let no_round_yet = data_round && !peers.rounds_completed.contains(&(name.clone(), peer.node_id));
                            drop(peers);
                            round_wanted |= has_gap || no_round_yet;
                        }
                        remote_state = state;
                        with_entry(shared, address, |entry| {
                            entry.state = Some(state);
                            entry.last_seen = Some(Instant::now());
                            entry.memory_alarm = memory_alarm;
                        });
                    }
                    Message::SnapshotChunk { records } => {
                        wait_for_room(shared, &outbox).await;
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
                        if let Some(current) = round.as_mut() {
                            current.bucket_keys(shared, &outbox, &repair_failures, bucket, keys, done);
                        }
                    }
                    Message::RepairRecords { records } => {
                        wait_for_room(shared, &outbox).await;
                        let applied = records.iter().filter(|record| apply_remote(shared, record)).count();
                        ReplicationMetrics::add(&shared.metrics.repairs_applied, applied as u64);
                    }
                    Message::RoundEnd => {
                        if let Some(done) = round.take().filter(Round::waiting_for_end) {
                            done.complete(shared, &name, address);
                            for waiter in round_waiters.drain(..) {
                                let _ = waiter.send(());
                            }
                        }
                    }
                    other => debug!(peer = %name, message = other.name(), "unexpected message on an outbound link"),
                }
            }
            // Only with room in the bulk queue: this task must never wait for the socket.
            permit = outbox.reserve_bulk(), if pending => {
                // A closed queue means the writer ended: reported by its branch next time round.
                let Ok(permit) = permit else { continue };
                match shared.log.read(next, shared.config.batch_max_items, shared.config.batch_max_bytes) {
                    Ok(items) => {
                        let Some((last, _)) = items.last() else { continue };
                        let last = *last;
                        let (records, touches) = batch(shared, &name, items.into_iter().map(|(_, item)| item));
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
            publication = publications.recv() => match publication {
                // Another link to the same node carries it.
                Ok(_) if !carrier.carries() => {}
                Ok(publication) => {
                    if outbox.publish(&publication) {
                        shared.publications.count_sent();
                    } else {
                        shared.publications.count_dropped(1);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    if carrier.carries() {
                        shared.publications.count_dropped(missed);
                    }
                }
                // The sender lives in `shared`, which this task holds.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > shared.config.peer_timeout {
                    return LinkError::TimedOut {
                        peer: name,
                        timeout_ms: shared.config.peer_timeout.as_millis() as u64,
                    };
                }
                outbox.urgent(super::outbox::heartbeat(shared, 0));
                // Under memory pressure rounds come every few seconds: a completed round with
                // every member is what lets tombstones go, and every eviction leaves one.
                if round.is_none()
                    && round_started.elapsed() >= PRESSURE_ROUND_INTERVAL
                    && *shared.state.borrow() == NodeState::Ready
                    && under_memory_pressure(shared)
                {
                    round_wanted = true;
                }
            }
            // The peers learn of a raised alarm at once, not at the next period: they accept
            // writes this node must apply.
            Ok(()) = memory_alarm_changes.changed() => {
                memory_alarm_changes.borrow_and_update();
                outbox.urgent(super::outbox::heartbeat(shared, 0));
            }
            _ = anti_entropy.tick() => {
                if *shared.state.borrow() == NodeState::Ready {
                    round_wanted = true;
                }
            }
            command = commands.recv() => match command {
                None => return LinkError::Cancelled { peer: name },
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
                    outbox.urgent_then(Message::Leave, reply);
                }
            },
        }
    }
}

/// The records and touches of one log batch, in log order. An item that cannot fit in a frame
/// would break the link forever: a placeholder record takes its place, an empty state with the
/// zero stamp, which changes nothing anywhere, but the batch's sequence stays contiguous.
fn batch(
    shared: &Shared,
    peer: &str,
    items: impl Iterator<Item = LogItem>,
) -> (Vec<Record>, Vec<Touch>) {
    let mut records = Vec::new();
    let mut touches = Vec::new();
    for item in items {
        match item {
            item if item.size() > shared.config.max_frame / 2 => {
                warn!(peer = %peer, "record too large to replicate; skipped");
                ReplicationMetrics::add(&shared.metrics.records_too_large, 1);
                records.push(match item {
                    LogItem::Record(record) => Record::placeholder(record.key),
                    LogItem::Touch(touch) => Record::placeholder(touch.key),
                });
            }
            LogItem::Record(record) => records.push(record),
            LogItem::Touch(touch) => touches.push(touch),
        }
    }
    (records, touches)
}
