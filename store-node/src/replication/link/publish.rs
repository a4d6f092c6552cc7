//! `PUBLISH` across the cluster: a message published on this node goes out once on this
//! node's link to each peer ([`super::outbound`]), and a message arriving on a peer's link
//! ([`super::inbound`]) is handed to this node's subscribers through the sink the node
//! installed. Messages are neither stored nor logged, and never wait: a link whose socket
//! falls [`LINK_BUDGET`] bytes behind drops the publications it cannot take (counted), like a
//! slow subscriber; a link that is down when a message is published never sees it (pub/sub is
//! at most once, as in Redis). A peer node discovered at two addresses (an IP and a DNS name,
//! an old and a new address while DNS catches up) has two links from this node: only one of
//! them, the first to carry a publication to that node (keyed by the node's name and id from
//! the handshake), carries them until it goes down, so each peer node gets each publication
//! once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// Publications queued for the links' tasks before the slowest loses the oldest.
const QUEUE: usize = 16 * 1024;

/// Bytes of publications a link may have queued for its socket before it drops new ones.
pub(crate) const LINK_BUDGET: usize = 32 << 20;

/// What the node does with a publication from a peer: `(shard, channel, message)`.
pub type PublishSink = Arc<dyn Fn(bool, &Bytes, &Bytes) + Send + Sync>;

/// One publication on its way to the peers.
#[derive(Debug, Clone)]
pub(crate) struct Publication {
    pub(crate) shard: bool,
    pub(crate) channel: Bytes,
    pub(crate) message: Bytes,
}

impl Publication {
    pub(crate) fn size(&self) -> usize {
        self.channel.len() + self.message.len() + 16
    }
}

/// Publication counters, in replication's `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishCounts {
    /// Publications sent on peer links (one per link).
    pub sent: u64,
    /// Publications received from peers.
    pub received: u64,
    /// Publications a link dropped: its socket was too far behind, or its task too slow.
    pub dropped: u64,
}

/// A peer node as its handshake names it: an incarnation, so a restarted node (a new id)
/// and its previous incarnation still listed at an old address are two nodes.
pub(crate) type PeerNode = (String, u32);

/// The publications state replication's tasks share.
pub(crate) struct Publications {
    queue: broadcast::Sender<Publication>,
    sink: OnceLock<PublishSink>,
    /// The link (by [`Publications::link_id`]) that carries publications to each peer node.
    carriers: Mutex<HashMap<PeerNode, u64>>,
    next_link: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
}

impl Default for Publications {
    fn default() -> Publications {
        Publications {
            queue: broadcast::channel(QUEUE).0,
            sink: OnceLock::new(),
            carriers: Mutex::new(HashMap::new()),
            next_link: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Publications {
    /// Queues a local publication for every link up now; never waits.
    pub(crate) fn publish(&self, publication: Publication) {
        // No link listening is no error: no peer is connected.
        let _ = self.queue.send(publication);
    }

    /// A link's view of the publications from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Publication> {
        self.queue.subscribe()
    }

    /// A new id for an outbound link session.
    pub(crate) fn link_id(&self) -> u64 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the link `link` is the one that carries publications to `peer`: the first link
    /// asking for a peer without a carrier becomes it.
    pub(crate) fn carries(&self, peer: &PeerNode, link: u64) -> bool {
        let mut carriers = self.carriers.lock();
        match carriers.get(peer) {
            Some(carrier) => *carrier == link,
            None => {
                carriers.insert(peer.clone(), link);
                true
            }
        }
    }

    /// The link `link` went down: another link to `peer`, if any, carries from now on.
    pub(crate) fn release(&self, peer: &PeerNode, link: u64) {
        let mut carriers = self.carriers.lock();
        if carriers.get(peer) == Some(&link) {
            carriers.remove(peer);
        }
    }

    /// Installs what a publication from a peer is handed to (once).
    pub(crate) fn set_sink(&self, sink: PublishSink) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Hands a publication from a peer to the sink.
    pub(crate) fn deliver(&self, shard: bool, channel: &Bytes, message: &Bytes) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if let Some(sink) = self.sink.get() {
            sink(shard, channel, message);
        }
    }

    pub(crate) fn count_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> PublishCounts {
        PublishCounts {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The bytes of publications a link has queued and not yet written, shared by the link's
/// session (which adds) and its writer (which subtracts).
#[derive(Debug, Clone, Default)]
pub(crate) struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    /// Takes `bytes` from the budget; `false` (nothing taken) when it would pass it.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                (queued + bytes <= LINK_BUDGET).then_some(queued + bytes)
            })
            .is_ok()
    }

    /// Gives back the bytes of a publication written (or dropped with the link).
    pub(crate) fn release(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Releases a link's carrier role when its session ends, however it ends.
pub(crate) struct Carrier<'a> {
    publications: &'a Publications,
    peer: PeerNode,
    link: u64,
}

impl<'a> Carrier<'a> {
    /// The carrier role of a new link session to `peer` (taken on its first publication).
    pub(crate) fn new(publications: &'a Publications, peer: PeerNode) -> Carrier<'a> {
        let link = publications.link_id();
        Carrier {
            publications,
            peer,
            link,
        }
    }

    /// Whether this link carries publications to its peer node now.
    pub(crate) fn carries(&self) -> bool {
        self.publications.carries(&self.peer, self.link)
    }
}

impl Drop for Carrier<'_> {
    fn drop(&mut self) {
        self.publications.release(&self.peer, self.link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_link_per_peer_node_carries_publications() {
        let publications = Publications::default();
        let node = ("node-1".to_string(), 7);
        let first = Carrier::new(&publications, node.clone());
        let second = Carrier::new(&publications, node.clone());
        let restarted = Carrier::new(&publications, ("node-1".to_string(), 8));
        assert!(first.carries());
        assert!(!second.carries());
        assert!(restarted.carries(), "a new incarnation is another node");
        drop(first);
        assert!(second.carries(), "the other link takes over");
        assert!(second.carries());
    }

    #[test]
    fn a_link_takes_publications_up_to_its_budget() {
        let backlog = Backlog::default();
        assert!(backlog.try_take(LINK_BUDGET - 10));
        assert!(!backlog.try_take(11));
        assert!(backlog.try_take(10));
        backlog.release(LINK_BUDGET);
        assert!(backlog.try_take(LINK_BUDGET));
    }
}
