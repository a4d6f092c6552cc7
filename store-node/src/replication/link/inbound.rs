//! The accepting side of links: the accept loop, and per link a reading task that applies the
//! dialer's batches and repairs and answers its heartbeats, and an answering task that serves
//! its snapshot, digest and repair requests in order through the link's [`Outbox`]. The
//! requests wait in a bounded queue (a full one blocks the peer's sends); a peer has at most
//! one digest and one snapshot request outstanding, and each is answered at most once a
//! second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::error::LinkError;
use super::handshake::{is_self, note_refusal, send_hello, validate_hello};
use super::outbox::{
    heartbeat, open_outbox, send_records, task_ended, wait_for_room, AbortOnDrop, Outbox,
};
use crate::replication::anti_entropy::answer_digest;
use crate::replication::bootstrap::serve_snapshot;
use crate::replication::metrics::ReplicationMetrics;
use crate::replication::shared::{apply_remote, bump_acks, update_peer_by_name, Shared};
use crate::replication::transport::{Connection, Listener, MessageReceiver, PeerRefusals};
use crate::replication::wire::{Hello, Message, NodeState};

/// Accepts peer connections until shutdown, one task per connection.
pub(crate) async fn accept_loop(shared: Arc<Shared>, mut listener: Box<dyn Listener>) {
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
        PeerRefusals::count(&shared.config.peer_refusals.hello);
        // Answer with this node's hello before closing: the dialer then knows why too.
        let _ = send_hello(&shared, &mut sender).await;
        note_refusal(
            &shared,
            &format!("{} ({remote_address})", peer.node_name),
            &reason.to_string(),
        );
        return;
    }
    if is_self(&shared, &peer) {
        return;
    }
    if send_hello(&shared, &mut sender).await.is_err() {
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
    let (outbox, mut writer) = open_outbox(&shared, &peer.node_name, sender);
    let (sender, queue) = mpsc::channel(REQUEST_QUEUE);
    let requests = Requests {
        sender,
        outstanding: Arc::new(Outstanding::default()),
    };
    let mut answerer = AbortOnDrop(tokio::spawn(answer_requests(
        shared.clone(),
        peer.node_name.clone(),
        queue,
        requests.outstanding.clone(),
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
    drop(answerer);
    // Requests still queued when the link ended are not answered: out of the gauge.
    let left = requests.outstanding.queued.load(Ordering::Relaxed);
    shared
        .metrics
        .requests_queued
        .fetch_sub(left, Ordering::Relaxed);
    if let Err(LinkError::TooManyRequests { .. }) = &result {
        ReplicationMetrics::add(&shared.metrics.requests_refused, 1);
    }
    match result {
        Ok(()) => debug!(peer = %peer.node_name, "inbound peer link closed"),
        Err(reason) => debug!(peer = %peer.node_name, %reason, "inbound peer link ended"),
    }
}

/// Requests of one peer queued for the answering task: beyond this the reading task stops
/// reading (the peer's sends block) until the answerer catches up. A well-behaved peer has a
/// few at a time: one round's digest and repair requests, or a snapshot request.
const REQUEST_QUEUE: usize = 64;

/// Least time between the starts of two answers to a peer's digests, and two snapshots: each
/// lists the whole keyspace, so a peer (misbehaving, or of a version with another timer) must
/// not make this node do it at will.
const MIN_LISTING_INTERVAL: Duration = Duration::from_secs(1);

/// What the acceptor of a link answers, in the order asked, off its reading task.
enum Request {
    Snapshot,
    Digest(Vec<u64>),
    Repair(Vec<Bytes>),
    RoundEnd,
}

/// The digest and snapshot requests of a link that are queued or being answered (at most one
/// each), and how many requests are queued, shared by the reading and the answering task.
#[derive(Default)]
struct Outstanding {
    digest: AtomicBool,
    snapshot: AtomicBool,
    queued: AtomicU64,
}

/// The reading task's end of a link's request queue.
struct Requests {
    sender: mpsc::Sender<Request>,
    outstanding: Arc<Outstanding>,
}

impl Requests {
    /// Queues a request for the answerer. A digest or snapshot request while one is
    /// outstanding breaks the protocol (a dialer runs one round and one snapshot at a time)
    /// and ends the link. A full queue makes this wait (the peer's sends block behind it),
    /// sending heartbeats meanwhile so that the peer keeps the link.
    async fn queue(
        &self,
        shared: &Shared,
        outbox: &Outbox,
        name: &str,
        request: Request,
    ) -> Result<(), LinkError> {
        let once = match &request {
            Request::Digest(_) => Some((&self.outstanding.digest, "digest")),
            Request::Snapshot => Some((&self.outstanding.snapshot, "snapshot-request")),
            Request::Repair(_) | Request::RoundEnd => None,
        };
        if let Some((flag, message)) = once {
            if flag.swap(true, Ordering::AcqRel) {
                return Err(LinkError::TooManyRequests {
                    peer: name.to_string(),
                    message,
                });
            }
        }
        self.outstanding.queued.fetch_add(1, Ordering::Relaxed);
        ReplicationMetrics::add(&shared.metrics.requests_queued, 1);
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + shared.config.heartbeat_interval,
            shared.config.heartbeat_interval,
        );
        let send = self.sender.send(request);
        tokio::pin!(send);
        loop {
            tokio::select! {
                // A failed queue means the answerer ended: reported by its task next time round.
                _ = &mut send => return Ok(()),
                _ = ticker.tick() => outbox.urgent(heartbeat(shared, 0)),
            }
        }
    }
}

/// The reading task of an inbound link: applies batches and repairs, answers heartbeats, and
/// hands every request that needs work to [`answer_requests`], so a keyspace listing or a
/// snapshot never stops it from reading. It ends when the peer closes or times out, or when
/// one of `tasks` (the writer and the answerer) ends.
async fn inbound_session(
    shared: &Shared,
    peer: &Hello,
    outbox: &Outbox,
    requests: &Requests,
    receiver: &mut dyn MessageReceiver,
    tasks: [&mut AbortOnDrop<LinkError>; 2],
) -> Result<(), LinkError> {
    let [writer, answerer] = tasks;
    let name = peer.node_name.as_str();
    loop {
        let received = tokio::select! {
            () = shared.shutdown.cancelled() => return Ok(()),
            ended = &mut writer.0 => return Err(task_ended(name, "writer", ended)),
            ended = &mut answerer.0 => return Err(task_ended(name, "answerer", ended)),
            received = tokio::time::timeout(shared.config.peer_timeout, receiver.recv()) => received,
        };
        let (message, bytes) = match received {
            Err(_) => {
                return Err(LinkError::TimedOut {
                    peer: name.to_string(),
                    timeout_ms: shared.config.peer_timeout.as_millis() as u64,
                })
            }
            Ok(Err(source)) => {
                return Err(LinkError::Receive {
                    peer: name.to_string(),
                    source,
                })
            }
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
                wait_for_room(shared, outbox).await;
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
            Message::Heartbeat {
                state,
                wall_ms,
                memory_alarm,
                ..
            } => {
                update_peer_by_name(shared, name, |entry| {
                    entry.last_seen = Some(Instant::now());
                    entry.memory_alarm = memory_alarm;
                    if state != NodeState::Left {
                        entry.left = false;
                    }
                });
                // The answer carries this node's clock and echoes the dialer's: the dialer
                // measures this node's clock from it (`ClockSamples`).
                outbox.urgent(heartbeat(shared, wall_ms));
                None
            }
            Message::SnapshotRequest => Some(Request::Snapshot),
            Message::Digest { buckets } => Some(Request::Digest(buckets)),
            Message::RepairRequest { keys } => Some(Request::Repair(keys)),
            Message::RepairRecords { records } => {
                wait_for_room(shared, outbox).await;
                let applied = records
                    .iter()
                    .filter(|record| apply_remote(shared, record))
                    .count();
                ReplicationMetrics::add(&shared.metrics.repairs_applied, applied as u64);
                None
            }
            Message::RoundEnd => Some(Request::RoundEnd),
            Message::Publish {
                shard,
                channel,
                message,
            } => {
                shared.publications.deliver(shard, &channel, &message);
                None
            }
            Message::Leave => {
                info!(peer = %name, "peer is leaving the cluster");
                update_peer_by_name(shared, name, |entry| {
                    entry.left = true;
                    entry.state = Some(NodeState::Left);
                });
                bump_acks(shared);
                None
            }
            other => {
                debug!(peer = %name, message = other.name(), "unexpected message on an inbound link");
                None
            }
        };
        if let Some(request) = request {
            requests.queue(shared, outbox, name, request).await?;
        }
    }
}

/// Answers an inbound link's requests one at a time, in order, through the link's bulk queue;
/// returns why it stopped.
async fn answer_requests(
    shared: Arc<Shared>,
    peer: String,
    mut requests: mpsc::Receiver<Request>,
    outstanding: Arc<Outstanding>,
    outbox: Outbox,
) -> LinkError {
    let mut next_digest = tokio::time::Instant::now();
    let mut next_snapshot = tokio::time::Instant::now();
    while let Some(request) = requests.recv().await {
        let answered = match request {
            Request::Snapshot => {
                tokio::time::sleep_until(next_snapshot).await;
                next_snapshot = tokio::time::Instant::now() + MIN_LISTING_INTERVAL;
                let served = serve_snapshot(&shared, &peer, &outbox).await;
                outstanding.snapshot.store(false, Ordering::Release);
                served
            }
            Request::Digest(buckets) => {
                tokio::time::sleep_until(next_digest).await;
                next_digest = tokio::time::Instant::now() + MIN_LISTING_INTERVAL;
                let answered = answer_digest(&shared, &outbox, &buckets).await;
                outstanding.digest.store(false, Ordering::Release);
                answered
            }
            Request::Repair(keys) => {
                let records = shared.replica.read_records(&keys);
                ReplicationMetrics::add(&shared.metrics.repairs_sent, records.len() as u64);
                send_records(&shared, &outbox, records, false).await
            }
            Request::RoundEnd => outbox.bulk(Message::RoundEnd).await,
        };
        outstanding.queued.fetch_sub(1, Ordering::Relaxed);
        shared
            .metrics
            .requests_queued
            .fetch_sub(1, Ordering::Relaxed);
        if let Err(error) = answered {
            return error;
        }
    }
    LinkError::Stopped { peer }
}

/// Counts an open inbound link of a peer (by name) while it lives: bootstrap waits for the
/// links back from its ready peers (see `wait_for_links_back`).
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
