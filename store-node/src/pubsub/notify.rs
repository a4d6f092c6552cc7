//! Keyspace notifications: [`Notifier::notify`] publishes one event of one key to this node's
//! subscribers, on `__keyspace@0__:<key>` (message: the event) and `__keyevent@0__:<event>`
//! (message: the key), as Redis does for db 0. Commands call it for their own writes, the
//! node's write hook for replicated changes, expiry and eviction; each node publishes only to
//! its own subscribers, so a subscriber sees each change once.
//!
//! The classes to publish live in one atomic: with notifications off (the default) an event
//! costs one relaxed load, and the channel names are built only when it is published.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{Hub, Kind};
use crate::config::KeyspaceEvents;

/// Publishes keyspace events through the node's [`Hub`], as `notify-keyspace-events` asks.
#[derive(Debug)]
pub struct Notifier {
    flags: AtomicU32,
    hub: Arc<Hub>,
}

impl Notifier {
    /// A notifier publishing `flags`' classes to `hub`'s subscribers.
    pub fn new(hub: Arc<Hub>, flags: KeyspaceEvents) -> Notifier {
        Notifier {
            flags: AtomicU32::new(flags.0),
            hub,
        }
    }

    /// The classes published (`CONFIG GET notify-keyspace-events`).
    pub fn flags(&self) -> KeyspaceEvents {
        KeyspaceEvents(self.flags.load(Ordering::Relaxed))
    }

    /// Changes the classes published (`CONFIG SET notify-keyspace-events`).
    pub fn set_flags(&self, flags: KeyspaceEvents) {
        self.flags.store(flags.0, Ordering::Relaxed);
    }

    /// Whether events of `class` (a [`KeyspaceEvents`] bit) are published: callers that must
    /// work to name an event ask first.
    #[inline]
    pub fn wants(&self, class: u32) -> bool {
        KeyspaceEvents(self.flags.load(Ordering::Relaxed)).publishes(class)
    }

    /// Publishes `event` of `key` if its `class` is on.
    #[inline]
    pub fn notify(&self, class: u32, event: &str, key: &[u8]) {
        let flags = self.flags.load(Ordering::Relaxed);
        if flags & class != 0 {
            self.publish(flags, event, key);
        }
    }

    #[cold]
    fn publish(&self, flags: u32, event: &str, key: &[u8]) {
        if flags & KeyspaceEvents::KEYSPACE != 0 {
            let mut channel = Vec::with_capacity(15 + key.len());
            channel.extend_from_slice(b"__keyspace@0__:");
            channel.extend_from_slice(key);
            self.hub
                .publish_local(Kind::Channel, &channel, event.as_bytes());
        }
        if flags & KeyspaceEvents::KEYEVENT != 0 {
            let mut channel = Vec::with_capacity(15 + event.len());
            channel.extend_from_slice(b"__keyevent@0__:");
            channel.extend_from_slice(event.as_bytes());
            self.hub.publish_local(Kind::Channel, &channel, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;

    fn drained(hub: &Hub, id: u64) -> String {
        let mut out = BytesMut::new();
        hub.subscriber(id, false).drain_into(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn events_go_to_the_keyspace_and_keyevent_channels_of_db_0() {
        let hub = Arc::new(Hub::default());
        let subscriber = hub.subscriber(1, false);
        hub.subscribe(
            &subscriber,
            Kind::Pattern,
            &Bytes::from_static(b"__key*__:*"),
        );
        let parse = |text| KeyspaceEvents::parse(text).unwrap_or_default();
        let notifier = Notifier::new(hub.clone(), parse("KE$"));
        notifier.notify(KeyspaceEvents::STRING, "set", b"k1");
        assert_eq!(
            drained(&hub, 1),
            "*4\r\n$8\r\npmessage\r\n$10\r\n__key*__:*\r\n$17\r\n__keyspace@0__:k1\r\n$3\r\nset\r\n\
             *4\r\n$8\r\npmessage\r\n$10\r\n__key*__:*\r\n$18\r\n__keyevent@0__:set\r\n$2\r\nk1\r\n"
        );
        notifier.notify(KeyspaceEvents::GENERIC, "del", b"k1");
        assert_eq!(drained(&hub, 1), "");
        notifier.set_flags(parse("Eg"));
        assert_eq!(notifier.flags().to_string(), "gE");
        notifier.notify(KeyspaceEvents::GENERIC, "del", b"k1");
        assert_eq!(
            drained(&hub, 1),
            "*4\r\n$8\r\npmessage\r\n$10\r\n__key*__:*\r\n$18\r\n__keyevent@0__:del\r\n$2\r\nk1\r\n"
        );
        // Classes without K or E publish nothing.
        notifier.set_flags(parse("g"));
        notifier.notify(KeyspaceEvents::GENERIC, "del", b"k1");
        assert_eq!(drained(&hub, 1), "");
        assert!(!notifier.wants(KeyspaceEvents::GENERIC));
    }
}
