//! [`NodeHook`]: how this node plugs replication and the write-ahead log into the keyspace
//! engine's write path. A local write is appended to the log (disc mode) and submitted to the
//! peers (replication); its receipt carries the log sequence and the replication sequence the
//! client must wait for. A change merged from a peer is only logged. Both are installed before
//! the node serves data commands: the log once disc recovery has loaded the keyspace, then
//! replication.
//!
//! The hook also publishes the keyspace events the engine alone sees: `new` for a key a local
//! write creates, `expired` and `evicted`, and for a change merged from a peer the event it
//! amounts to ([`merged_event`]; docs/replication.md lists them). Commands publish their own.

use std::sync::{Arc, OnceLock};

use crate::config::KeyspaceEvents;
use crate::persistence::Persistence;
use crate::pubsub::Notifier;
use crate::replication::{HybridClock, Replication};
use crate::store::{
    Kind, MergedChange, RecordView, Stamp, Touch, Versioning, WriteHook, WriteReceipt,
};

/// How far past the wall clock a recovered stamp may move the local clock of a node without
/// peers (the replication engine's own bound).
const MAX_CLOCK_DRIFT_MS: u64 = 60_000;

/// The write-ahead log of a disc node, with the clock that stamps its local writes when it has
/// no peers (origin: the persistent node id).
#[derive(Debug)]
struct Disc {
    persistence: Arc<Persistence>,
    clock: HybridClock,
    origin: u32,
}

/// The node's [`WriteHook`]: replication and the write-ahead log, each once installed, and
/// the keyspace events of what the engine changes on its own or merges.
#[derive(Debug)]
pub struct NodeHook {
    disc: OnceLock<Disc>,
    replication: OnceLock<Replication>,
    notifier: Arc<Notifier>,
}

impl NodeHook {
    /// A hook with nothing installed (one node in RAM: writes are unversioned), publishing
    /// keyspace events through `notifier`.
    pub fn new(notifier: Arc<Notifier>) -> NodeHook {
        NodeHook {
            disc: OnceLock::new(),
            replication: OnceLock::new(),
            notifier,
        }
    }

    /// Installs the write-ahead log after the recovered records were loaded and before the
    /// node serves: from then on every applied write, local or from a peer, is appended. Local
    /// writes of a node without replication are stamped with origin `origin` (the persistent
    /// node id) by a clock set past `max_hlc` (the greatest recovered stamp). Only the first
    /// call has an effect (it returns false otherwise).
    pub fn set_persistence(
        &self,
        persistence: Arc<Persistence>,
        origin: u32,
        max_hlc: u64,
    ) -> bool {
        let clock = HybridClock::new(
            crate::replication::clock::system_wall_clock(),
            MAX_CLOCK_DRIFT_MS,
        );
        clock.observe(max_hlc);
        self.disc
            .set(Disc {
                persistence,
                clock,
                origin,
            })
            .is_ok()
    }

    /// Installs replication before the node serves data commands; only the first call has an
    /// effect (it returns false otherwise).
    pub fn set_replication(&self, replication: Replication) -> bool {
        self.replication.set(replication).is_ok()
    }

    /// Replication, once installed.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.get()
    }

    /// The write-ahead log, once installed (disc mode).
    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.disc.get().map(|disc| &disc.persistence)
    }

    /// Appends to the log; a failure is logged here and reported in the receipt.
    fn append(&self, record: &RecordView<'_>, receipt: &mut WriteReceipt) {
        let Some(persistence) = self.persistence() else {
            return;
        };
        match persistence.append_view(record) {
            Ok(seq) => receipt.logged = receipt.logged.max(seq),
            Err(error) => {
                tracing::warn!(%error, "failed to append a record to the write-ahead log");
                receipt.log_failed = true;
            }
        }
    }
}

impl WriteHook for NodeHook {
    fn versioning(&self) -> Versioning {
        if self.replication.get().is_some() {
            Versioning::Replicated
        } else if self.disc.get().is_some() {
            Versioning::Stamped
        } else {
            Versioning::Unversioned
        }
    }

    fn stamp(&self, replaced: Option<Stamp>) -> Stamp {
        let replaced = replaced.map_or(0, |stamp| stamp.hlc);
        match (self.replication.get(), self.disc.get()) {
            (Some(replication), _) => replication.stamp_after(replaced),
            (None, Some(disc)) => Stamp {
                hlc: disc.clock.now_after(replaced),
                origin: disc.origin,
            },
            (None, None) => Stamp { hlc: 0, origin: 0 },
        }
    }

    fn local_write(&self, record: &RecordView<'_>) -> WriteReceipt {
        let mut receipt = WriteReceipt::NONE;
        self.append(record, &mut receipt);
        if let Some(replication) = self.replication.get() {
            let seq = replication.submit(record.to_record());
            receipt.replicated = Some((seq, seq));
        }
        receipt
    }

    fn local_touch(&self, touch: Touch, record: &RecordView<'_>) -> WriteReceipt {
        // Disc mode logs the touched key's whole record with its new expiry (same stamp: replay
        // merges it like the touch), so a restart keeps the touch. The peers get the touch
        // itself, coalesced; the client does not wait for it.
        let mut receipt = WriteReceipt::NONE;
        self.append(record, &mut receipt);
        if let Some(replication) = self.replication.get() {
            replication.submit_touch(touch);
        }
        receipt
    }

    fn merged(&self, record: &RecordView<'_>, change: &dyn Fn() -> MergedChange) {
        let mut ignored = WriteReceipt::NONE;
        self.append(record, &mut ignored);
        if !self.notifier.wants(MERGED_CLASSES) {
            return;
        }
        let change = change();
        if change == MergedChange::Created {
            self.notifier.notify(KeyspaceEvents::NEW, "new", record.key);
        }
        if let Some((class, event)) = merged_event(record, change) {
            self.notifier.notify(class, event, record.key);
        }
    }

    fn created(&self, key: &[u8]) {
        self.notifier.notify(KeyspaceEvents::NEW, "new", key);
    }

    fn expired(&self, key: &[u8]) {
        self.notifier
            .notify(KeyspaceEvents::EXPIRED, "expired", key);
    }

    fn evicted(&self, key: &[u8]) {
        self.notifier
            .notify(KeyspaceEvents::EVICTED, "evicted", key);
    }

    fn room(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        let persistence = self.persistence().filter(|log| !log.has_room())?.clone();
        Some(Box::pin(async move { persistence.wait_for_room().await }))
    }
}

/// The classes of the events [`merged_event`] publishes (and `new`): with none of them on, a
/// merge's change is not worked out.
const MERGED_CLASSES: u32 = KeyspaceEvents::GENERIC
    | KeyspaceEvents::STRING
    | KeyspaceEvents::HASH
    | KeyspaceEvents::SET
    | KeyspaceEvents::ZSET
    | KeyspaceEvents::LIST
    | KeyspaceEvents::EXPIRED
    | KeyspaceEvents::NEW;

/// The keyspace event (class and name) a change merged from a peer amounts to: the event of
/// the command that most simply makes it (a new string value `set`, a hash `hset` or `hdel`
/// when it only lost fields, a new expiry `expire`, a removed one `persist`, a delete `del`, a
/// version whose expiry passed before it arrived `expired`). `new` comes before it when the
/// key is created ([`NodeHook::merged`]).
pub fn merged_event(record: &RecordView<'_>, change: MergedChange) -> Option<(u32, &'static str)> {
    let kind = (!record.header.absent).then_some(record.header.kind);
    match change {
        MergedChange::Unseen => None,
        MergedChange::Deleted => Some((KeyspaceEvents::GENERIC, "del")),
        MergedChange::Expired => Some((KeyspaceEvents::EXPIRED, "expired")),
        MergedChange::Expiry(Some(_)) => Some((KeyspaceEvents::GENERIC, "expire")),
        MergedChange::Expiry(None) => Some((KeyspaceEvents::GENERIC, "persist")),
        MergedChange::FieldsRemoved => kind.map(|kind| match kind {
            Kind::Hash => (KeyspaceEvents::HASH, "hdel"),
            Kind::Set => (KeyspaceEvents::SET, "srem"),
            Kind::ZSet => (KeyspaceEvents::ZSET, "zrem"),
            Kind::List => (KeyspaceEvents::LIST, "lrem"),
            Kind::String => (KeyspaceEvents::STRING, "set"),
        }),
        MergedChange::Created | MergedChange::Replaced => kind.map(|kind| match kind {
            Kind::String => (KeyspaceEvents::STRING, "set"),
            Kind::Hash => (KeyspaceEvents::HASH, "hset"),
            Kind::Set => (KeyspaceEvents::SET, "sadd"),
            Kind::ZSet => (KeyspaceEvents::ZSET, "zadd"),
            Kind::List => (KeyspaceEvents::LIST, "rpush"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{Record, Value};

    #[test]
    fn a_merged_change_is_announced_as_the_command_that_makes_it() {
        let stamp = Stamp { hlc: 1, origin: 1 };
        let string = Record::live(
            Bytes::from_static(b"k"),
            stamp,
            Value::String(Bytes::from_static(b"v")),
            None,
        );
        let hash = Record::live(
            Bytes::from_static(b"k"),
            stamp,
            Value::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]),
            None,
        );
        let tombstone = Record::tombstone(Bytes::from_static(b"k"), stamp, 1);
        let cases = [
            (&string, MergedChange::Created, Some("set")),
            (&string, MergedChange::Replaced, Some("set")),
            (&hash, MergedChange::Created, Some("hset")),
            (&hash, MergedChange::Replaced, Some("hset")),
            (&hash, MergedChange::FieldsRemoved, Some("hdel")),
            (&string, MergedChange::Expiry(Some(5)), Some("expire")),
            (&string, MergedChange::Expiry(None), Some("persist")),
            (&tombstone, MergedChange::Deleted, Some("del")),
            (&tombstone, MergedChange::Expired, Some("expired")),
            (&tombstone, MergedChange::Unseen, None),
        ];
        for (record, change, event) in cases {
            assert_eq!(
                merged_event(&record.view(), change).map(|(_, name)| name),
                event,
                "{change:?}"
            );
        }
    }
}
