//! The sending side of a link: an [`Outbox`] of two queues and the writer task that owns the
//! transport's sender, so that the tasks reading a link never wait for its socket; also the
//! guard that aborts a link's tasks when the link ends.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

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

/// A link's writer puts every message already queued into one write, until about this many
/// bytes: under write load a batch, its ack and the next batch leave in one syscall each way
/// instead of one per frame.
const WRITE_COALESCE: usize = 256 * 1024;

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
pub(crate) struct Outbox {
    /// The peer, to name it in errors.
    peer: Arc<str>,
    /// Heartbeats, acks, requests: small, queued without waiting, written before bulk traffic.
    urgent: mpsc::UnboundedSender<UrgentMessage>,
    /// Log batches, snapshot chunks and anti-entropy traffic, at most [`BULK_QUEUE`] queued.
    bulk: mpsc::Sender<Message>,
    /// Bytes of publications queued and not yet written.
    backlog: Backlog,
}

impl Outbox {
    /// The peer this link reaches.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Queues a small message. A writer that ended reports it through its task, not here.
    pub(crate) fn urgent(&self, message: Message) {
        let _ = self.urgent.send((message, None));
    }

    /// Queues a small message and answers `written` once it is on the wire (dropped unanswered
    /// when the link fails first).
    pub(crate) fn urgent_then(&self, message: Message, written: oneshot::Sender<()>) {
        let _ = self.urgent.send((message, Some(written)));
    }

    /// Queues a publication for the peer's subscribers unless the link already holds
    /// [`super::publish::LINK_BUDGET`] bytes of them; returns whether it was queued. Never
    /// waits: a publisher must not slow down for a slow peer.
    pub(crate) fn publish(&self, publication: &Publication) -> bool {
        if !self.backlog.try_take(publication.size()) {
            return false;
        }
        self.urgent(Message::Publish {
            shard: publication.shard,
            channel: publication.channel.clone(),
            message: publication.message.clone(),
        });
        true
    }

    /// Queues bulk traffic, waiting while the queue is full.
    pub(crate) async fn bulk(&self, message: Message) -> Result<(), LinkError> {
        self.bulk
            .send(message)
            .await
            .map_err(|_| LinkError::Stopped {
                peer: self.peer.to_string(),
            })
    }

    /// Waits for room in the bulk queue, for a task that must not wait for the socket: it
    /// builds its bulk message only once the room is there. Fails once the writer ended.
    pub(crate) async fn reserve_bulk(
        &self,
    ) -> Result<mpsc::Permit<'_, Message>, mpsc::error::SendError<()>> {
        self.bulk.reserve().await
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
/// fails, and is aborted when the returned guard is dropped.
pub(crate) fn open_outbox(
    shared: &Arc<Shared>,
    peer: &str,
    sender: Box<dyn MessageSender>,
) -> (Outbox, AbortOnDrop<LinkError>) {
    let peer: Arc<str> = Arc::from(peer);
    let (urgent, urgent_queue) = mpsc::unbounded_channel();
    let (bulk, bulk_queue) = mpsc::channel(BULK_QUEUE);
    let backlog = Backlog::default();
    let writer = tokio::spawn(write_link(
        shared.clone(),
        peer.clone(),
        sender,
        (urgent_queue, bulk_queue),
        backlog.clone(),
    ));
    (
        Outbox {
            peer,
            urgent,
            bulk,
            backlog,
        },
        AbortOnDrop(writer),
    )
}

/// The writer task of a link: writes urgent messages before bulk ones, coalescing whatever is
/// queued into one write; returns why it stopped.
async fn write_link(
    shared: Arc<Shared>,
    peer: Arc<str>,
    mut sender: Box<dyn MessageSender>,
    queues: (
        mpsc::UnboundedReceiver<UrgentMessage>,
        mpsc::Receiver<Message>,
    ),
    backlog: Backlog,
) -> LinkError {
    let (mut urgent, mut bulk) = queues;
    let stopped = || LinkError::Stopped {
        peer: peer.to_string(),
    };
    let mut written: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            // Heartbeats and acks first: a peer must not time out behind a queue of repairs.
            biased;
            next = urgent.recv() => match next {
                Some(next) => next,
                None => return stopped(),
            },
            next = bulk.recv() => match next {
                Some(message) => (message, None),
                None => return stopped(),
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
                        Ok(len) if matches!(message, Message::Publish { .. }) => {
                            if let Message::Publish {
                                channel, message, ..
                            } = &message
                            {
                                backlog.release(channel.len() + message.len() + 16);
                            }
                            bytes += len;
                        }
                        Ok(len) => bytes += len,
                        Err(source) => {
                            return LinkError::Send {
                                peer: peer.to_string(),
                                message: message.name(),
                                source,
                            }
                        }
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
            let message = Message::Ack { seq };
            match sender.queue(&message) {
                Ok(len) => bytes += len,
                Err(source) => {
                    return LinkError::Send {
                        peer: peer.to_string(),
                        message: message.name(),
                        source,
                    }
                }
            }
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
