//! Pub/sub on one node: who is subscribed to which channel, pattern and shard channel, and
//! [`Hub::publish_local`], which hands a message to this node's subscribers only. A `PUBLISH`
//! reaches the other nodes through replication's peer links (`commands::pubsub` sends it, each
//! peer calls `publish_local` on arrival), so every subscriber in the cluster gets it once;
//! keyspace notifications publish through `publish_local` on the node that applies a change.
//!
//! Publishing never waits for a subscriber: the message is encoded once per protocol and
//! appended to each subscriber's bounded queue ([`subscriber`]), which its connection writes
//! out; a queue over the `client-output-buffer-limit pubsub` bound disconnects that subscriber
//! alone.

pub mod kind;
pub mod notify;
pub mod subscriber;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};

pub use kind::Kind;
pub use notify::Notifier;
use subscriber::Appended;
pub use subscriber::{OutputLimit, Subscriber, Subscriptions};

use crate::store::glob;

/// Pub/sub counters for `/metrics` and INFO.
#[derive(Debug, Default)]
pub struct PubSubMetrics {
    /// Messages published on this node (PUBLISH, SPUBLISH, keyspace events), local or from peers.
    pub published: AtomicU64,
    /// Messages queued for a subscriber.
    pub delivered: AtomicU64,
    /// Messages not queued because their subscriber was over its output buffer limit.
    pub dropped: AtomicU64,
    /// Subscribers disconnected for passing the output buffer limit.
    pub disconnected: AtomicU64,
}

type Subscribers = HashMap<Bytes, HashMap<u64, Arc<Subscriber>>>;

#[derive(Debug, Default)]
struct Registry {
    channels: Subscribers,
    patterns: Subscribers,
    shard: Subscribers,
}

impl Registry {
    fn of(&self, kind: Kind) -> &Subscribers {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut Subscribers {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }
}

/// The node's pub/sub registry.
#[derive(Debug)]
pub struct Hub {
    registry: RwLock<Registry>,
    /// Every connection that has a [`Subscriber`], by client id.
    clients: Mutex<HashMap<u64, Arc<Subscriber>>>,
    limit: Mutex<OutputLimit>,
    /// The counters.
    pub metrics: PubSubMetrics,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            registry: RwLock::default(),
            clients: Mutex::default(),
            limit: Mutex::new(OutputLimit::DEFAULT),
            metrics: PubSubMetrics::default(),
        }
    }
}

impl Hub {
    /// The subscriber of client `id`, created on its first subscription.
    pub fn subscriber(&self, id: u64, resp3: bool) -> Arc<Subscriber> {
        self.clients
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(Subscriber::new(id, resp3)))
            .clone()
    }

    /// Subscribes; returns the subscriber's count for the confirmation.
    pub fn subscribe(&self, subscriber: &Arc<Subscriber>, kind: Kind, name: &Bytes) -> usize {
        let mut subscriptions = subscriber.subscriptions.lock();
        if subscriptions.of_mut(kind).insert(name.clone()) {
            self.registry
                .write()
                .of_mut(kind)
                .entry(name.clone())
                .or_default()
                .insert(subscriber.id, subscriber.clone());
        }
        subscriptions.count_for(kind)
    }

    /// Unsubscribes (whether or not it was subscribed); returns the count for the confirmation.
    pub fn unsubscribe(&self, subscriber: &Subscriber, kind: Kind, name: &Bytes) -> usize {
        let mut subscriptions = subscriber.subscriptions.lock();
        if subscriptions.of_mut(kind).remove(name) {
            self.forget(kind, name, subscriber.id);
        }
        subscriptions.count_for(kind)
    }

    /// Unsubscribes from every subscription of `kind`; returns each name with the count after
    /// it, in byte order.
    pub fn unsubscribe_all(&self, subscriber: &Subscriber, kind: Kind) -> Vec<(Bytes, usize)> {
        let mut subscriptions = subscriber.subscriptions.lock();
        let names = std::mem::take(subscriptions.of_mut(kind));
        let base = subscriptions.count_for(kind);
        let total = names.len();
        names
            .into_iter()
            .enumerate()
            .map(|(index, name)| {
                self.forget(kind, &name, subscriber.id);
                (name, base + total - index - 1)
            })
            .collect()
    }

    fn forget(&self, kind: Kind, name: &Bytes, id: u64) {
        let mut registry = self.registry.write();
        let map = registry.of_mut(kind);
        if let Some(subscribers) = map.get_mut(name) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                map.remove(name);
            }
        }
    }

    /// Drops every subscription of a connection that ends or RESETs.
    pub fn remove_client(&self, id: u64) {
        let Some(subscriber) = self.clients.lock().remove(&id) else {
            return;
        };
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            self.unsubscribe_all(&subscriber, kind);
        }
    }

    /// Hands `message` on `channel` to this node's subscribers only: for [`Kind::Channel`] the
    /// channel's subscribers and the matching patterns' (`message`, `pmessage`), for
    /// [`Kind::Shard`] the shard channel's (`smessage`). Returns how many received it (a
    /// subscriber over its output buffer limit does not count).
    pub fn publish_local(&self, kind: Kind, channel: &[u8], message: &[u8]) -> usize {
        self.metrics.published.fetch_add(1, Ordering::Relaxed);
        let limit = *self.limit.lock();
        let now = Instant::now();
        let registry = self.registry.read();
        let mut received = 0;
        let direct = match kind {
            Kind::Shard => registry.shard.get(channel),
            _ => registry.channels.get(channel),
        };
        if let Some(subscribers) = direct {
            let name: &[u8] = if kind == Kind::Shard {
                b"smessage"
            } else {
                b"message"
            };
            let encoded = encode_message(name, None, channel, message);
            received += self.deliver(subscribers.values(), &encoded, limit, now);
        }
        if kind != Kind::Shard {
            for (pattern, subscribers) in &registry.patterns {
                if glob::matches(pattern, channel) {
                    let encoded = encode_message(b"pmessage", Some(pattern), channel, message);
                    received += self.deliver(subscribers.values(), &encoded, limit, now);
                }
            }
        }
        received
    }

    fn deliver<'a>(
        &self,
        subscribers: impl Iterator<Item = &'a Arc<Subscriber>>,
        resp2: &[u8],
        limit: OutputLimit,
        now: Instant,
    ) -> usize {
        let mut resp3: Option<Vec<u8>> = None;
        let mut received = 0;
        for subscriber in subscribers {
            let bytes = if subscriber.resp3() {
                resp3.get_or_insert_with(|| {
                    let mut bytes = resp2.to_vec();
                    bytes[0] = b'>';
                    bytes
                })
            } else {
                resp2
            };
            match subscriber.append(bytes, limit, now) {
                Appended::Queued => received += 1,
                Appended::Dropped { newly_disconnected } => {
                    self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    if newly_disconnected {
                        self.metrics.disconnected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            client = subscriber.id,
                            hard_bytes = limit.hard,
                            soft_bytes = limit.soft,
                            soft_seconds = limit.soft_seconds,
                            "closing subscriber: over the pubsub output buffer limit"
                        );
                    }
                }
            }
        }
        self.metrics
            .delivered
            .fetch_add(received as u64, Ordering::Relaxed);
        received
    }

    /// `PUBSUB NUMSUB`/`SHARDNUMSUB`: subscribers of one channel on this node.
    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        self.registry
            .read()
            .of(kind)
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// `PUBSUB CHANNELS`/`SHARDCHANNELS`: the channels with a subscriber on this node that
    /// match `pattern` (all without one), sorted.
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let registry = self.registry.read();
        let mut names: Vec<Bytes> = registry
            .of(kind)
            .keys()
            .filter(|name| pattern.is_none_or(|pattern| glob::matches(pattern, name)))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Distinct channels, patterns and shard channels with a subscriber on this node.
    pub fn counts(&self) -> (usize, usize, usize) {
        let registry = self.registry.read();
        (
            registry.channels.len(),
            registry.patterns.len(),
            registry.shard.len(),
        )
    }

    /// Connections subscribed to anything.
    pub fn subscribers(&self) -> usize {
        self.clients
            .lock()
            .values()
            .filter(|subscriber| subscriber.subscriptions.lock().any())
            .count()
    }

    /// The output buffer limit of subscribers.
    pub fn output_limit(&self) -> OutputLimit {
        *self.limit.lock()
    }

    /// Sets the output buffer limit (`CONFIG SET client-output-buffer-limit`).
    pub fn set_output_limit(&self, limit: OutputLimit) {
        *self.limit.lock() = limit;
    }
}

/// `*3 $7 message $channel $message` (or `*4 $8 pmessage $pattern ...`), RESP2; a RESP3 push
/// differs only in its first byte.
fn encode_message(name: &[u8], pattern: Option<&[u8]>, channel: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(48 + channel.len() + message.len());
    let parts: &[&[u8]] = match pattern {
        Some(pattern) => &[name, pattern, channel, message],
        None => &[name, channel, message],
    };
    out.put_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.put_slice(format!("${}\r\n", part.len()).as_bytes());
        out.put_slice(part);
        out.put_slice(b"\r\n");
    }
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(subscriber: &Subscriber) -> String {
        let mut out = BytesMut::new();
        subscriber.drain_into(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn channels_patterns_and_shard_channels_each_reach_their_subscribers() {
        let hub = Hub::default();
        let two = hub.subscriber(2, false);
        let three = hub.subscriber(3, true);
        let ch = Bytes::from_static(b"news.1");
        assert_eq!(hub.subscribe(&two, Kind::Channel, &ch), 1);
        assert_eq!(hub.subscribe(&two, Kind::Channel, &ch), 1);
        assert_eq!(
            hub.subscribe(&two, Kind::Pattern, &Bytes::from_static(b"news.*")),
            2
        );
        assert_eq!(hub.subscribe(&three, Kind::Shard, &ch), 1);
        assert_eq!(hub.publish_local(Kind::Channel, b"news.1", b"hi"), 2);
        assert_eq!(
            drained(&two),
            "*3\r\n$7\r\nmessage\r\n$6\r\nnews.1\r\n$2\r\nhi\r\n*4\r\n$8\r\npmessage\r\n$6\r\nnews.*\r\n$6\r\nnews.1\r\n$2\r\nhi\r\n"
        );
        assert_eq!(drained(&three), "");
        assert_eq!(hub.publish_local(Kind::Shard, b"news.1", b"s"), 1);
        assert_eq!(
            drained(&three),
            ">3\r\n$8\r\nsmessage\r\n$6\r\nnews.1\r\n$1\r\ns\r\n"
        );
        assert_eq!(hub.numsub(Kind::Channel, b"news.1"), 1);
        assert_eq!(hub.counts(), (1, 1, 1));
        assert_eq!(hub.subscribers(), 2);
        assert_eq!(
            hub.unsubscribe_all(&two, Kind::Channel),
            vec![(ch.clone(), 1)]
        );
        hub.remove_client(2);
        hub.remove_client(3);
        assert_eq!(hub.counts(), (0, 0, 0));
        assert_eq!(hub.publish_local(Kind::Channel, b"news.1", b"hi"), 0);
        assert_eq!(hub.metrics.delivered.load(Ordering::Relaxed), 3);
    }
}
