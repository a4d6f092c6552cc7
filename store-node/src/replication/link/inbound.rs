//! The accepting side of links: the accept loop, and per link a reading task that applies the
//! dialer's batches and repairs and answers its heartbeats, and an answering task that serves
//! its snapshot, digest and repair requests in order through the link's [`Outbox`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::error::LinkError;
use super::handshake::{is_self, note_refusal, send_hello, validate_hello};
use super::outbox::{open_outbox, send_records, task_ended, AbortOnDrop, Outbox};
use crate::replication::anti_entropy::answer_digest;
use crate::replication::bootstrap::serve_snapshot;
use crate::replication::metrics::ReplicationMetrics;
use crate::replication::shared::{apply_remote, bump_acks, update_peer_by_name, Shared};
use crate::replication::transport::{Connection, Listener, MessageReceiver};
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
        // Answer with this node's hello before closing: the dialer then knows why too.
        let _ = send_hello(&shared, &mut sender).await;
        note_refusal(&shared, &peer.node_name, &reason.to_string());
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
                update_peer_by_name(shared, name, |entry| {
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
) -> LinkError {
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
