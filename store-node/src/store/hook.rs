//! The engine's one extension point: a [`WriteHook`] sees every change the write path makes,
//! local or merged from elsewhere, while the key's shard is still locked, and returns what the
//! client of a local write must wait for as a [`WriteReceipt`]. Replication (submit the record
//! to the peers), the write-ahead log (append it) and keyspace notifications (keys created,
//! changed by a peer, expired, evicted) plug in here; the engine knows none of them.

use super::record::{RecordView, Touch};
use super::stamp::Stamp;

/// How the engine versions writes, as the installed hook asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Entries carry no stamp and deletes leave nothing behind (one node in RAM).
    Unversioned,
    /// Local writes are stamped and every change is handed to the hook, but deletes leave no
    /// tombstone in memory (one node in disc mode: the log gets a tombstone record so that
    /// replay removes the key).
    Stamped,
    /// Local writes are stamped, deletes leave tombstones (so that a delete wins over older
    /// versions on every node), sliding expiry becomes [`Touch`]es, and the digests are kept
    /// (replication).
    Replicated,
}

/// What a change merged from elsewhere did to the key as a client sees it (keyspace
/// notifications name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergedChange {
    /// The key held no live value and now holds one.
    Created,
    /// The key's live value was replaced by another (or by the same with another expiry and
    /// a new version).
    Replaced,
    /// The key is a hash that lost fields and kept the others unchanged.
    FieldsRemoved,
    /// Only the expiry of the same value moved (a touch, or the same value with a new
    /// expiry): `Some` the new one, `None` removed.
    Expiry(Option<u64>),
    /// The key's live value was deleted.
    Deleted,
    /// The key's live value was replaced by a version whose expiry had passed when it
    /// arrived: the key expired here.
    Expired,
    /// Nothing a client could see changed (a tombstone over a tombstone or an expired value).
    Unseen,
}

/// What the client of a local write must wait for before its reply is sent: that the peers
/// acknowledged the replication sequence numbers `replicated.0..=replicated.1`, and that the
/// write-ahead log is durable up to `logged` (or that the append failed). Writes that need no
/// wait return the empty receipt. Receipts of several writes (a pipeline, `MSET`, `EXEC`)
/// merge into one with [`WriteReceipt::merge`].
#[must_use = "a write's receipt says what its client must wait for; merge it into the command's"]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The first and last replication sequence numbers the writes submitted (`None`: none).
    pub replicated: Option<(u64, u64)>,
    /// The highest write-ahead log sequence the writes appended (0: none).
    pub logged: u64,
    /// Whether an append to the write-ahead log failed: the reply must be the log's error.
    pub log_failed: bool,
}

impl WriteReceipt {
    /// A receipt asking for no wait.
    pub const NONE: WriteReceipt = WriteReceipt {
        replicated: None,
        logged: 0,
        log_failed: false,
    };

    /// Adds `other`'s waits to this receipt.
    pub fn merge(&mut self, other: WriteReceipt) {
        self.replicated = match (self.replicated, other.replicated) {
            (Some((first, last)), Some((other_first, other_last))) => {
                Some((first.min(other_first), last.max(other_last)))
            }
            (mine, theirs) => mine.or(theirs),
        };
        self.logged = self.logged.max(other.logged);
        self.log_failed |= other.log_failed;
    }

    /// Whether the client waits for nothing.
    pub fn is_empty(&self) -> bool {
        *self == WriteReceipt::NONE
    }
}

/// What replication and the write-ahead log see of the engine's write path. Every method is
/// called with the key's shard locked, in per-key order, so it must be short and must not
/// block (back-pressure belongs in [`WriteHook::room`], awaited before the lock).
pub trait WriteHook: Send + Sync + 'static {
    /// How writes are versioned while this hook is installed.
    fn versioning(&self) -> Versioning;

    /// The stamp of a new local write that replaces the key's stored version stamped
    /// `replaced` (a live value or a tombstone; `None` when the key held nothing stamped):
    /// greater than `replaced`, so that a write following another on any node wins whatever
    /// the clocks say. Not called in [`Versioning::Unversioned`].
    fn stamp(&self, replaced: Option<Stamp>) -> Stamp;

    /// A local write left the key in the state `record` (a live value or a tombstone);
    /// returns what its client must wait for.
    fn local_write(&self, record: &RecordView<'_>) -> WriteReceipt;

    /// A local write moved the expiry of the stored version later (sliding expiry):
    /// `touch` says which version and where to; `record` is the key's whole state after it.
    fn local_touch(&self, touch: Touch, record: &RecordView<'_>) -> WriteReceipt;

    /// A record from elsewhere (a peer) changed the key to `record`, or a touch from a peer
    /// moved its expiry: the state is kept as it is, never handed back as a local write.
    /// `change` says what that amounts to; it compares values, so a hook calls it only when
    /// it reports changes (keyspace notifications on).
    fn merged(&self, record: &RecordView<'_>, change: &dyn Fn() -> MergedChange);

    /// A local write created `key` (it held no live value). Called before the write's own
    /// record is handed over, as Redis announces a new key before the command's event.
    fn created(&self, _key: &[u8]) {}

    /// This node removed `key` because its expiry passed (on access or by the sweep; every
    /// node does so from the same replicated expiry, and nothing is replicated).
    fn expired(&self, _key: &[u8]) {}

    /// This node evicted `key` for memory (its delete follows as a local write).
    fn evicted(&self, _key: &[u8]) {}

    /// Back-pressure of the hook's own queues (the write-ahead log's): `None` when a write may
    /// go ahead now, else a future that completes when it may. Awaited, never blocked on, by
    /// whoever is about to write (a client connection, the link applying a peer's records)
    /// before it locks anything.
    fn room(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        None
    }
}

/// A hook that records what the engine hands it (tests of the write path).
#[cfg(test)]
pub mod testing {
    use parking_lot::Mutex;

    use super::{MergedChange, Versioning, WriteHook, WriteReceipt};
    use crate::store::record::{Record, RecordView, Touch};
    use crate::store::stamp::Stamp;

    /// Records local writes, touches and merges; stamps from a counter; every local write gets
    /// the next replication sequence number in its receipt, like replication does.
    #[derive(Debug)]
    pub struct RecordingHook {
        versioning: Versioning,
        inner: Mutex<Recorded>,
    }

    /// What a [`RecordingHook`] saw.
    #[derive(Debug, Default, Clone)]
    pub struct Recorded {
        /// Local writes, in order.
        pub local: Vec<Record>,
        /// Local touches, in order.
        pub touches: Vec<Touch>,
        /// Changes merged from elsewhere, in order, with what each amounted to.
        pub merged: Vec<(Record, MergedChange)>,
        /// Keys local writes created, expired keys and evicted keys, in order, each with
        /// `created`, `expired` or `evicted`.
        pub events: Vec<(&'static str, Vec<u8>)>,
        /// The last stamp handed out.
        pub clock: u64,
        /// The replaced stamps the write path passed to [`WriteHook::stamp`], in order.
        pub replaced: Vec<Option<Stamp>>,
    }

    impl RecordingHook {
        /// A hook asking for `versioning`.
        pub fn new(versioning: Versioning) -> RecordingHook {
            RecordingHook {
                versioning,
                inner: Mutex::new(Recorded::default()),
            }
        }

        /// What it saw so far.
        pub fn recorded(&self) -> Recorded {
            self.inner.lock().clone()
        }
    }

    impl WriteHook for RecordingHook {
        fn versioning(&self) -> Versioning {
            self.versioning
        }

        fn stamp(&self, replaced: Option<Stamp>) -> Stamp {
            let mut inner = self.inner.lock();
            inner.replaced.push(replaced);
            inner.clock += 1;
            Stamp {
                hlc: inner.clock,
                origin: 1,
            }
        }

        fn local_write(&self, record: &RecordView<'_>) -> WriteReceipt {
            let mut inner = self.inner.lock();
            inner.local.push(record.to_record());
            let seq = inner.local.len() as u64;
            WriteReceipt {
                replicated: Some((seq, seq)),
                ..WriteReceipt::NONE
            }
        }

        fn local_touch(&self, touch: Touch, _record: &RecordView<'_>) -> WriteReceipt {
            self.inner.lock().touches.push(touch);
            WriteReceipt::NONE
        }

        fn merged(&self, record: &RecordView<'_>, change: &dyn Fn() -> MergedChange) {
            self.inner
                .lock()
                .merged
                .push((record.to_record(), change()));
        }

        fn created(&self, key: &[u8]) {
            self.inner.lock().events.push(("created", key.to_vec()));
        }

        fn expired(&self, key: &[u8]) {
            self.inner.lock().events.push(("expired", key.to_vec()));
        }

        fn evicted(&self, key: &[u8]) {
            self.inner.lock().events.push(("evicted", key.to_vec()));
        }
    }
}
