//! One subscribed connection as the publishers see it: a bounded queue of encoded messages the
//! connection writes out when it can. A publisher only appends to it (a lock and a copy), never
//! waits for the connection's socket; a connection whose queue passes Redis's
//! `client-output-buffer-limit pubsub` is marked for disconnection and gets nothing more.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::kind::Kind;

/// The output buffer limit of subscribed connections: `hard` bytes at once, or more than `soft`
/// bytes for `soft_seconds` in a row (0 disables a bound), as Redis's
/// `client-output-buffer-limit pubsub <hard> <soft> <soft-seconds>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    /// Bytes queued that disconnect at once; 0 = no bound.
    pub hard: u64,
    /// Bytes queued that disconnect when exceeded for `soft_seconds`; 0 = no bound.
    pub soft: u64,
    /// How long the soft bound may be exceeded.
    pub soft_seconds: u64,
}

impl OutputLimit {
    /// Redis's defaults for the pubsub class: 32 MiB hard, 8 MiB for 60 s.
    pub const DEFAULT: OutputLimit = OutputLimit {
        hard: 32 << 20,
        soft: 8 << 20,
        soft_seconds: 60,
    };
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Queued for the connection.
    Queued,
    /// Not queued: the connection is (now) over its limit and being disconnected.
    Dropped {
        /// Whether this append is the one that crossed the limit.
        newly_disconnected: bool,
    },
}

#[derive(Debug, Default)]
struct Queue {
    pending: BytesMut,
    /// Since when the queue holds more than the soft bound.
    over_soft_since: Option<Instant>,
    /// Over the limit: the connection closes and is sent nothing more.
    disconnected: bool,
}

/// The channels, patterns and shard channels one connection is subscribed to, in byte order
/// (an `UNSUBSCRIBE` without arguments answers in that order).
#[derive(Debug, Default, Clone)]
pub struct Subscriptions {
    /// `SUBSCRIBE`d channels.
    pub channels: BTreeSet<Bytes>,
    /// `PSUBSCRIBE`d patterns.
    pub patterns: BTreeSet<Bytes>,
    /// `SSUBSCRIBE`d shard channels.
    pub shard: BTreeSet<Bytes>,
}

impl Subscriptions {
    /// The set of one kind.
    pub fn of(&self, kind: Kind) -> &BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard,
        }
    }

    pub(crate) fn of_mut(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count a (un)subscribe reply carries: channels and patterns together, shard channels
    /// on their own (as Redis 7 counts them).
    pub fn count_for(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shard.len(),
        }
    }

    /// Whether the connection is subscribed to anything (RESP2 subscribed mode).
    pub fn any(&self) -> bool {
        self.total() > 0
    }

    /// Subscriptions of every kind.
    pub fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }
}

/// A subscribed connection's side of the hub.
#[derive(Debug)]
pub struct Subscriber {
    /// The connection's client id.
    pub id: u64,
    resp3: AtomicBool,
    queue: Mutex<Queue>,
    ready: Notify,
    pub(crate) subscriptions: Mutex<Subscriptions>,
}

impl Subscriber {
    pub(crate) fn new(id: u64, resp3: bool) -> Subscriber {
        Subscriber {
            id,
            resp3: AtomicBool::new(resp3),
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            subscriptions: Mutex::new(Subscriptions::default()),
        }
    }

    /// Whether messages are encoded as RESP3 pushes (`>`) rather than RESP2 arrays.
    pub fn set_resp3(&self, resp3: bool) {
        self.resp3.store(resp3, Ordering::Relaxed);
    }

    pub(crate) fn resp3(&self) -> bool {
        self.resp3.load(Ordering::Relaxed)
    }

    /// A copy of the current subscriptions.
    pub fn subscriptions(&self) -> Subscriptions {
        self.subscriptions.lock().clone()
    }

    /// Queues an encoded message unless that passes `limit`; wakes the connection.
    pub(crate) fn append(&self, message: &[u8], limit: OutputLimit, now: Instant) -> Appended {
        let mut queue = self.queue.lock();
        if queue.disconnected {
            return Appended::Dropped {
                newly_disconnected: false,
            };
        }
        let queued = (queue.pending.len() + message.len()) as u64;
        let over_hard = limit.hard > 0 && queued > limit.hard;
        let over_soft = limit.soft > 0 && queued > limit.soft;
        let soft_expired = match (over_soft, queue.over_soft_since) {
            (true, Some(since)) => {
                now.saturating_duration_since(since) >= Duration::from_secs(limit.soft_seconds)
            }
            (true, None) => {
                queue.over_soft_since = Some(now);
                limit.soft_seconds == 0
            }
            (false, _) => {
                queue.over_soft_since = None;
                false
            }
        };
        if over_hard || soft_expired {
            queue.disconnected = true;
            queue.pending = BytesMut::new();
            drop(queue);
            self.ready.notify_one();
            return Appended::Dropped {
                newly_disconnected: true,
            };
        }
        let was_empty = queue.pending.is_empty();
        queue.pending.extend_from_slice(message);
        drop(queue);
        if was_empty {
            self.ready.notify_one();
        }
        Appended::Queued
    }

    /// Takes every queued message (appended to `out`); returns whether the connection went
    /// over its output buffer limit and must close.
    pub fn drain_into(&self, out: &mut BytesMut) -> bool {
        let mut queue = self.queue.lock();
        if !queue.pending.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut queue.pending);
            } else {
                out.extend_from_slice(&queue.pending);
                queue.pending.clear();
            }
            queue.over_soft_since = None;
        }
        queue.disconnected
    }

    /// Resolves once something was queued (or the connection went over its limit) since the
    /// last call; a wake-up that came while nobody waited is kept.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: OutputLimit = OutputLimit {
        hard: 100,
        soft: 40,
        soft_seconds: 10,
    };

    #[test]
    fn the_hard_bound_disconnects_at_once_and_drops_what_was_queued() {
        let subscriber = Subscriber::new(1, false);
        let now = Instant::now();
        assert_eq!(subscriber.append(&[b'x'; 60], LIMIT, now), Appended::Queued);
        assert_eq!(
            subscriber.append(&[b'x'; 41], LIMIT, now),
            Appended::Dropped {
                newly_disconnected: true
            }
        );
        assert_eq!(
            subscriber.append(b"y", LIMIT, now),
            Appended::Dropped {
                newly_disconnected: false
            }
        );
        let mut out = BytesMut::new();
        assert!(subscriber.drain_into(&mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn the_soft_bound_disconnects_only_when_exceeded_for_its_seconds() {
        let subscriber = Subscriber::new(1, false);
        let start = Instant::now();
        assert_eq!(
            subscriber.append(&[b'x'; 50], LIMIT, start),
            Appended::Queued
        );
        assert_eq!(
            subscriber.append(b"x", LIMIT, start + Duration::from_secs(9)),
            Appended::Queued
        );
        // Drained in between: the clock starts again.
        let mut out = BytesMut::new();
        assert!(!subscriber.drain_into(&mut out));
        assert_eq!(out.len(), 51);
        let later = start + Duration::from_secs(20);
        assert_eq!(
            subscriber.append(&[b'x'; 50], LIMIT, later),
            Appended::Queued
        );
        assert_eq!(
            subscriber.append(b"x", LIMIT, later + Duration::from_secs(10)),
            Appended::Dropped {
                newly_disconnected: true
            }
        );
    }
}
