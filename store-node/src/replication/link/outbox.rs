//! The sending side of a link: an [`Outbox`] of bounded queues and the writer task that owns
//! the transport's sender, so that the tasks reading a link never wait for its socket; also
//! the guard that aborts a link's tasks when the link ends.
//!
//! Every queue of a link is bounded, whatever its peer does. Heartbeats and acks are
//! coalesced: a newer one replaces the one not written yet (an ack is cumulative, a heartbeat
//! says the current state), so they take one slot each. Requests (digests, snapshot requests,
//! leave) go in a queue of [`URGENT_QUEUE`]; a link that fills it, which takes a peer that has
//! not read for a long time, is closed (and redialled). Publications for the peer's
//! subscribers have a queue of their own, bounded by their bytes
//! ([`super::publish::LINK_BUDGET`]): past it they are dropped and counted, never waited for.
//! Bulk traffic waits for one of [`BULK_QUEUE`] places: the producer slows down with the
//! socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::error::LinkError;
use super::publish::{Backlog, Publication};
use crate::replication::metrics::ReplicationMetrics;
use crate::replication::shared::Shared;
use crate::replication::transport::MessageSender;
use crate::replication::wire::Message;
use crate::store::Record;

/// Bulk frames (log batches, snapshot chunks, anti-entropy lists and repairs) a link queues for
/// its writer beyond what the socket holds: a peer that reads slowly slows their producers down
/// instead of growing memory.
const BULK_QUEUE: usize = 8;

/// Requests (digests, snapshot requests, leave) a link queues for its writer. A link sends a
/// handful at most (one round and one snapshot at a time): a full queue means the writer has
/// not written for a long time, and the link is closed rather than let it grow.
pub(crate) const URGENT_QUEUE: usize = 64;

/// A link's writer puts every message already queued into one write, until about this many
/// bytes: under write load a batch, its ack and the next batch leave in one syscall each way
/// instead of one per frame.
const WRITE_COALESCE: usize = 256 * 1024;

/// A small message for a link's writer, and who to tell once it is on the wire.
type UrgentMessage = (Message, Option<oneshot::Sender<()>>);

/// The latest heartbeat and ack not written yet: a newer one replaces an older one.
#[derive(Default)]
struct Latest {
    heartbeat: Option<Message>,
    ack: Option<u64>,
}

/// What the writer and the producers of a link share besides the queues.
struct LinkSlots {
    /// The coalesced heartbeat and ack.
    latest: Mutex<Latest>,
    /// Wakes the writer when `latest` got something.
    wake: Notify,
    /// Cancelled when the urgent queue overflowed: the writer ends the link.
    overflow: CancellationToken,
    /// Messages in this link's urgent and bulk queues (the `outbox_messages` gauge sums the
    /// live links').
    queued: Arc<AtomicU64>,
}

/// The sending side of a link. One task per link ([`write_link`]) owns the transport's sender,
/// so the task that reads a link never waits for its socket to take a frame.
///
/// That is what keeps a link free of deadlock: if both ends could stop reading while they wait
/// to send, two full socket buffers (one end sending repair requests, the other their answers)
/// would block both forever. The dialer's reading task queues only urgent messages (never
/// waited for) and offers a log batch only when the bulk queue has room; the acceptor's reading
/// task hands its answers' work to a task of its own. So each end keeps reading whatever the
/// other does, and either end alone is enough to keep the link moving, also against a peer of
/// an older version.
#[derive(Clone)]
pub(crate) struct Outbox {
    /// The peer, to name it in errors.
    peer: Arc<str>,
    /// Requests: small, queued without waiting, written before bulk traffic.
    urgent: mpsc::Sender<UrgentMessage>,
    /// The coalesced heartbeat and ack, and the overflow switch.
    latest: Arc<LinkSlots>,
    /// Log batches, snapshot chunks and anti-entropy traffic, at most [`BULK_QUEUE`] queued.
    bulk: mpsc::Sender<Message>,
    /// Publications, bounded by `backlog`.
    publications: mpsc::UnboundedSender<Message>,
    /// Bytes of publications queued and not yet written.
    backlog: Backlog,
}

/// The receiving ends of a link's queues, for its writer.
struct Queues {
    urgent: mpsc::Receiver<UrgentMessage>,
    publications: mpsc::UnboundedReceiver<Message>,
    bulk: mpsc::Receiver<Message>,
}

impl Outbox {
    /// The peer this link reaches.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Queues a small message without waiting: a heartbeat or an ack replaces the one not
    /// written yet; anything else takes a place in the urgent queue, and a full queue closes
    /// the link (its writer reports it).
    pub(crate) fn urgent(&self, message: Message) {
        self.queue_urgent(message, None);
    }

    /// Queues a small message and answers `written` once it is on the wire (dropped unanswered
    /// when the link fails first).
    pub(crate) fn urgent_then(&self, message: Message, written: oneshot::Sender<()>) {
        self.queue_urgent(message, Some(written));
    }

    fn queue_urgent(&self, message: Message, written: Option<oneshot::Sender<()>>) {
        match message {
            Message::Ack { seq } if written.is_none() => {
                let mut latest = self.latest.latest.lock();
                latest.ack = latest.ack.max(Some(seq));
                drop(latest);
                self.latest.wake.notify_one();
            }
            message @ Message::Heartbeat { .. } if written.is_none() => {
                self.latest.latest.lock().heartbeat = Some(message);
                self.latest.wake.notify_one();
            }
            message => match self.urgent.try_send((message, written)) {
                Ok(()) => {
                    self.latest.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => self.latest.overflow.cancel(),
                // The writer ended: reported by its task.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
        }
    }

    /// Queues a publication for the peer's subscribers unless the link already holds
    /// [`super::publish::LINK_BUDGET`] bytes of them; returns whether it was queued. Never
    /// waits: a publisher must not slow down for a slow peer.
    pub(crate) fn publish(&self, publication: &Publication) -> bool {
        if !self.backlog.try_take(publication.size()) {
            return false;
        }
        let message = Message::Publish {
            shard: publication.shard,
            channel: publication.channel.clone(),
            message: publication.message.clone(),
        };
        if self.publications.send(message).is_err() {
            // The writer ended (reported by its task): nothing will release these bytes.
            self.backlog.release(publication.size());
            return false;
        }
        self.latest.queued.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Queues bulk traffic, waiting while the queue is full.
    pub(crate) async fn bulk(&self, message: Message) -> Result<(), LinkError> {
        self.bulk
            .send(message)
            .await
            .map_err(|_| LinkError::Stopped {
                peer: self.peer.to_string(),
            })?;
        self.latest.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for room in the bulk queue, for a task that must not wait for the socket: it
    /// builds its bulk message only once the room is there. Fails once the writer ended.
    pub(crate) async fn reserve_bulk(&self) -> Result<BulkPermit<'_>, mpsc::error::SendError<()>> {
        let permit = self.bulk.reserve().await?;
        Ok(BulkPermit {
            permit,
            queued: &self.latest.queued,
        })
    }
}

/// A place in a link's bulk queue (see [`Outbox::reserve_bulk`]).
pub(crate) struct BulkPermit<'a> {
    permit: mpsc::Permit<'a, Message>,
    queued: &'a AtomicU64,
}

impl BulkPermit<'_> {
    /// Queues `message` in the reserved place.
    pub(crate) fn send(self, message: Message) {
        self.permit.send(message);
        self.queued.fetch_add(1, Ordering::Relaxed);
    }
}

/// This node's heartbeat: its state, log head, wall clock and memory alarm; `echo_ms` is the
/// `wall_ms` of the heartbeat it answers (0 when it answers none).
pub(crate) fn heartbeat(shared: &Shared, echo_ms: u64) -> Message {
    Message::Heartbeat {
        state: *shared.state.borrow(),
        head: shared.log.head(),
        wall_ms: shared.clock.wall_ms(),
        echo_ms,
        memory_alarm: *shared.memory_alarm.borrow(),
    }
}

/// Waits until the store has room for records from a peer ([`Replica::room`]: a write-ahead
/// log that a slow disc filled), without blocking the thread, and meanwhile sends this link's
/// peer a heartbeat every heartbeat interval: the link's reading task is not reading, and the
/// peer must not take the wait for a dead link.
///
/// [`Replica::room`]: crate::replication::Replica::room
pub(crate) async fn wait_for_room(shared: &Shared, outbox: &Outbox) {
    let Some(mut room) = shared.replica.room() else {
        return;
    };
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.config.heartbeat_interval,
        shared.config.heartbeat_interval,
    );
    loop {
        tokio::select! {
            () = &mut room => return,
            () = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => outbox.urgent(heartbeat(shared, 0)),
        }
    }
}

/// Queues records in chunks of the configured size, as snapshot chunks or repairs.
pub(crate) async fn send_records(
    shared: &Shared,
    outbox: &Outbox,
    records: Vec<Record>,
    snapshot: bool,
) -> Result<(), LinkError> {
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

/// Starts the writer task of the link to `peer`; the task ends (returning why) when a send
/// fails or its urgent queue overflowed, and is aborted when the returned guard is dropped.
pub(crate) fn open_outbox(
    shared: &Arc<Shared>,
    peer: &str,
    sender: Box<dyn MessageSender>,
) -> (Outbox, AbortOnDrop<LinkError>) {
    let peer: Arc<str> = Arc::from(peer);
    let (urgent, urgent_queue) = mpsc::channel(URGENT_QUEUE);
    let (bulk, bulk_queue) = mpsc::channel(BULK_QUEUE);
    let (publications, publication_queue) = mpsc::unbounded_channel();
    let backlog = Backlog::default();
    let queued = Arc::new(AtomicU64::new(0));
    {
        let mut gauges = shared.outbox_gauges.lock();
        gauges.retain(|gauge| gauge.strong_count() > 0);
        gauges.push(Arc::downgrade(&queued));
    }
    let latest = Arc::new(LinkSlots {
        latest: Mutex::new(Latest::default()),
        wake: Notify::new(),
        overflow: CancellationToken::new(),
        queued,
    });
    let writer = tokio::spawn(write_link(
        shared.clone(),
        peer.clone(),
        sender,
        latest.clone(),
        Queues {
            urgent: urgent_queue,
            publications: publication_queue,
            bulk: bulk_queue,
        },
        backlog.clone(),
    ));
    (
        Outbox {
            peer,
            urgent,
            latest,
            bulk,
            publications,
            backlog,
        },
        AbortOnDrop(writer),
    )
}

/// The writer task of a link: writes the latest heartbeat and ack, then requests, then
/// publications, then bulk messages, coalescing whatever is queued into one write; returns why
/// it stopped.
async fn write_link(
    shared: Arc<Shared>,
    peer: Arc<str>,
    mut sender: Box<dyn MessageSender>,
    latest: Arc<LinkSlots>,
    queues: Queues,
    backlog: Backlog,
) -> LinkError {
    let Queues {
        mut urgent,
        mut publications,
        mut bulk,
    } = queues;
    let stopped = || LinkError::Stopped {
        peer: peer.to_string(),
    };
    let send_failed = |message: &Message, source| LinkError::Send {
        peer: peer.to_string(),
        message: message.name(),
        source,
    };
    let mut written: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            // Heartbeats and acks first: a peer must not time out behind a queue of repairs.
            biased;
            () = latest.overflow.cancelled() => {
                ReplicationMetrics::add(&shared.metrics.outbox_overflows, 1);
                return LinkError::OutboxFull {
                    peer: peer.to_string(),
                    queued: URGENT_QUEUE,
                };
            }
            () = latest.wake.notified() => None,
            next = urgent.recv() => match next {
                Some(next) => Some(next),
                None => return stopped(),
            },
            next = publications.recv() => match next {
                Some(message) => Some((message, None)),
                None => return stopped(),
            },
            next = bulk.recv() => match next {
                Some(message) => Some((message, None)),
                None => return stopped(),
            },
        };
        let mut bytes = 0;
        let (heartbeat, ack) = {
            let mut pending = latest.latest.lock();
            (pending.heartbeat.take(), pending.ack.take())
        };
        if let Some(message) = heartbeat {
            match sender.queue(&message) {
                Ok(len) => bytes += len,
                Err(source) => return send_failed(&message, source),
            }
        }
        // Everything else already queued goes out in the same write (requests before bulk,
        // each queue in order), up to about WRITE_COALESCE bytes.
        let mut taken = 0u64;
        let mut next = first;
        loop {
            if let Some((message, done)) = next.take() {
                taken += 1;
                match sender.queue(&message) {
                    Ok(len) => bytes += len,
                    Err(source) => return send_failed(&message, source),
                }
                if let Message::Publish {
                    channel, message, ..
                } = &message
                {
                    backlog.release(channel.len() + message.len() + 16);
                }
                written.extend(done);
            }
            if sender.queued() >= WRITE_COALESCE {
                break;
            }
            next = match urgent.try_recv() {
                Ok(message) => Some(message),
                Err(_) => match publications.try_recv().or_else(|_| bulk.try_recv()) {
                    Ok(message) => Some((message, None)),
                    Err(_) => break,
                },
            };
        }
        latest.queued.fetch_sub(taken, Ordering::Relaxed);
        // The ack goes last: it may then cover what the reading task applied meanwhile.
        let ack = latest.latest.lock().ack.take().max(ack);
        if let Some(seq) = ack {
            let message = Message::Ack { seq };
            match sender.queue(&message) {
                Ok(len) => bytes += len,
                Err(source) => return send_failed(&message, source),
            }
        }
        if bytes == 0 {
            continue;
        }
        if let Err(source) = sender.flush().await {
            return LinkError::Flush {
                peer: peer.to_string(),
                source,
            };
        }
        ReplicationMetrics::add(&shared.metrics.bytes_sent, bytes as u64);
        for done in written.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Aborts a link's task (reader, writer, answerer, repair) when the session ends.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a link task of `peer` ended: its own reason, or how it failed.
pub(crate) fn task_ended(
    peer: &str,
    task: &'static str,
    ended: Result<LinkError, tokio::task::JoinError>,
) -> LinkError {
    ended.unwrap_or_else(|source| LinkError::Task {
        peer: peer.to_string(),
        task,
        source,
    })
}
