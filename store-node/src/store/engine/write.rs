//! The one write path: every local change of the keyspace (commands, the session API, FLUSHALL,
//! RENAME, eviction) is an [`Op`] applied here under the key's shard lock, stamped and handed
//! to the [`WriteHook`] as the versioning asks (what the write changed, its delta), and
//! answered with a [`WriteReceipt`].

use bytes::Bytes;

use super::{lru_now, MemoryEngine, Shard};
use crate::store::entry::Entry;
use crate::store::hook::{Versioning, WriteHook, WriteReceipt};
use crate::store::op::Op;
use crate::store::record::{Record, Touch};
use crate::store::stamp::Stamp;
use crate::store::state::{apply, encode, view, Header, Keep};
use crate::store::table::Position;
use crate::store::unix_ms;
use crate::store::value::{Kind, Value};

/// What the engine keeps of a key's state under `versioning`.
fn keep_of(versioning: Versioning) -> Keep {
    match versioning {
        Versioning::Unversioned => Keep::Values,
        Versioning::Stamped => Keep::Versions,
        Versioning::Replicated => Keep::Deletions,
    }
}

/// The new entry of a write and what it hands to the hook.
enum Built {
    /// A plain string written whole (`SET`): the entry is its own delta.
    Whole(Entry),
    /// Anything else: the key's new entry (`None`: gone) and the delta's record.
    Delta(Option<Entry>, Option<Record>),
}

/// Builds what `op` makes of the key's entry `old` with the write's `stamp`.
fn build(op: &Op, old: Option<&Entry>, stamp: Option<Stamp>, now: u64, keep: Keep) -> Built {
    let lru = lru_now(now);
    if let Op::Put {
        key,
        value: Value::String(data),
        expire_at,
        keep_ttl: false,
    } = op
    {
        // The hot path: a string written whole is a plain entry, whatever was there.
        let header = Header {
            kind: Kind::String,
            expire_at: *expire_at,
            stamp,
            absent: false,
            plain: true,
            has_dead: false,
        };
        return Built::Whole(Entry::new(key, &header, data, lru));
    }
    let Some(key) = op.key() else {
        return Built::Delta(None, None);
    };
    // A stored state always decodes (this node encoded it); should one not, the write starts
    // from nothing rather than failing.
    let state = old.and_then(|entry| entry.state().ok());
    let applied = apply(op, state, stamp.unwrap_or(Stamp::ZERO), now, keep);
    let versioned = stamp.is_some();
    let entry = applied.state.map(|state| {
        let (header, payload) = encode(&state, versioned);
        Entry::new(key, &header, &payload, lru)
    });
    let delta = applied
        .delta
        .filter(|_| versioned)
        .map(|delta| Record::from_state(key.clone(), &delta));
    Built::Delta(entry, delta)
}

impl MemoryEngine {
    /// Applies a local `op` at `now` through the write path, without a key access held
    /// (tests, FLUSHALL).
    pub fn apply(&self, op: &Op, now: u64) -> WriteReceipt {
        match op.key() {
            Some(key) => {
                let (hash, mut shard) = self.shard_for(key);
                self.write_locked(&mut shard, hash, op, now)
            }
            None => self.flush(now),
        }
    }

    /// Applies a local `op` to its locked key and hands the result to the hook.
    pub(super) fn write_locked(
        &self,
        shard: &mut Shard,
        hash: u64,
        op: &Op,
        now: u64,
    ) -> WriteReceipt {
        self.write_known(shard, hash, None, op, now)
    }

    /// [`MemoryEngine::write_locked`] with the key's place in the table possibly known
    /// already (`Some`: from a lookup since which the table has not changed), so the write
    /// searches its chain once or not at all.
    pub(super) fn write_known(
        &self,
        shard: &mut Shard,
        hash: u64,
        known: Option<Option<Position>>,
        op: &Op,
        now: u64,
    ) -> WriteReceipt {
        let Some(key) = op.key() else {
            return WriteReceipt::NONE;
        };
        let hook = self.hook();
        let versioning = hook.map_or(Versioning::Unversioned, WriteHook::versioning);
        if let (
            Versioning::Unversioned,
            Op::SetExpiry {
                expire_at: Some(at),
                ..
            },
        ) = (versioning, op)
        {
            // Unversioned (one node in RAM): an expiry that replaces one is rewritten in the
            // entry, not by a copy of it. Same size, still volatile: nothing to account.
            let moved = shard
                .table
                .get_mut(hash, key)
                .filter(|entry| entry.is_live(now))
                .is_some_and(|entry| entry.set_expiry_in_place(*at));
            if moved {
                self.touch_watched(shard, key);
                return WriteReceipt::NONE;
            }
        }
        // The expiry rewritten in place above moves no entry: `known` still holds.
        let position = match known {
            Some(position) => position,
            None => shard.table.position(hash, key),
        };
        let old = position.and_then(|position| shard.table.at(position));
        if let (
            Some(hook),
            Versioning::Replicated,
            Op::SetExpiry {
                expire_at: Some(at),
                ..
            },
        ) = (hook, versioning, op)
        {
            // Sliding expiry: a later expiry of the same version is a touch, coalesced and
            // cheap on the wire, instead of a new version carrying the whole value.
            let current = old
                .filter(|entry| entry.is_live(now))
                .and_then(|entry| Some((entry.expire_at()?, entry.expiry_stamp()?)));
            if let Some((current, value_stamp)) = current.filter(|(current, _)| at >= current) {
                if *at == current {
                    return WriteReceipt::NONE;
                }
                let Some(entry) = position.and_then(|position| shard.table.at_mut(position)) else {
                    return WriteReceipt::NONE;
                };
                entry.set_expiry_in_place(*at);
                let touch = Touch {
                    key: key.clone(),
                    value_stamp,
                    expire_at: *at,
                };
                let receipt = hook.local_touch(touch, &entry.view());
                self.touch_watched(shard, key);
                return receipt;
            }
        }
        let stamp = match (hook, versioning) {
            (Some(hook), Versioning::Stamped | Versioning::Replicated) => {
                Some(hook.stamp(old.and_then(Entry::stamp)))
            }
            _ => None,
        };
        let mut receipt = WriteReceipt::NONE;
        let was_live = old.is_some_and(|old| old.is_live(now));
        let (entry, delta) = match build(op, old, stamp, now, keep_of(versioning)) {
            Built::Whole(entry) => {
                if let (Some(hook), Some(_)) = (hook, stamp) {
                    receipt = hook.local_write(&entry.view());
                }
                (Some(entry), None)
            }
            Built::Delta(entry, delta) => (entry, delta),
        };
        if let (Some(hook), Some(entry), false) = (hook, &entry, was_live) {
            if entry.is_live(now) {
                hook.created(key);
            }
        }
        if let (Some(hook), Some(delta)) = (hook, &delta) {
            receipt = hook.local_write(&delta.view());
        }
        match entry {
            Some(entry) => {
                let cost = entry.cost_info();
                let old = shard.insert_digested_at(hash, position, entry);
                self.account(shard, old.as_ref(), Some(&cost));
            }
            None => {
                if let Some(old) = shard.table.remove(hash, key) {
                    shard.digest_remove(&old);
                    self.account(shard, Some(&old), None);
                }
            }
        }
        self.touch_watched(shard, key);
        receipt
    }

    /// FLUSHALL: deletes every key. Versioned, one delete per live key through the write path
    /// (tombstones that win over older versions everywhere and survive anti-entropy; log
    /// records); unversioned, the tables are cleared.
    fn flush(&self, now: u64) -> WriteReceipt {
        let mut receipt = WriteReceipt::NONE;
        if self.versioning() != Versioning::Unversioned {
            for shard in self.shards.iter() {
                let mut shard = shard.lock();
                let mut keys = Vec::new();
                shard.table.for_each(|entry| {
                    if entry.is_live(now) {
                        keys.push(Bytes::copy_from_slice(entry.key()));
                    }
                });
                for key in keys {
                    let hash = self.hash(&key);
                    receipt.merge(self.write_locked(&mut shard, hash, &Op::Delete { key }, now));
                }
            }
            return receipt;
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            self.touch_all_watched(&mut shard);
            shard.table.clear();
            let used = shard.used;
            shard.used = 0;
            shard.volatile = 0;
            shard.tombstones = 0;
            self.tombstone_bytes
                .fetch_sub(shard.tombstone_bytes, std::sync::atomic::Ordering::Relaxed);
            shard.tombstone_bytes = 0;
            shard.digests = crate::store::digest::BucketDigests::new();
            self.used
                .fetch_sub(used, std::sync::atomic::Ordering::Relaxed);
        }
        self.update_alarm();
        receipt
    }

    /// Deletes every key (FLUSHALL, FLUSHDB).
    pub fn flush_all(&self) -> WriteReceipt {
        self.flush(unix_ms())
    }

    /// RENAME/RENAMENX: moves `from` to `to` (with its value and expiry) as two ops, a delete
    /// and a put, under both shard locks. The outcome is `None` when `from` does not exist,
    /// `Some(false)` when `only_if_absent` and `to` exists, `Some(true)` when renamed; the
    /// receipt covers both writes.
    pub fn rename(
        &self,
        from: &Bytes,
        to: &Bytes,
        only_if_absent: bool,
    ) -> (Option<bool>, WriteReceipt) {
        let now = unix_ms();
        let (from_hash, to_hash) = (self.hash(from), self.hash(to));
        let (from_index, to_index) = (Self::shard_of(from_hash), Self::shard_of(to_hash));
        // Lock in index order so two renames in opposite directions cannot deadlock.
        let (mut first, mut second) = if from_index == to_index {
            (self.shards[from_index].lock(), None)
        } else if from_index < to_index {
            let first = self.shards[from_index].lock();
            (first, Some(self.shards[to_index].lock()))
        } else {
            let second = self.shards[to_index].lock();
            (self.shards[from_index].lock(), Some(second))
        };
        let Some(source) = first
            .table
            .get(from_hash, from)
            .filter(|entry| entry.is_live(now))
        else {
            return (None, WriteReceipt::NONE);
        };
        let Some(value) = source.state().ok().as_ref().and_then(view::to_value) else {
            return (None, WriteReceipt::NONE);
        };
        let expire_at = source.expire_at();
        if from == to {
            return (Some(!only_if_absent), WriteReceipt::NONE);
        }
        let target_shard: &mut Shard = match second.as_mut() {
            Some(guard) => guard,
            None => &mut first,
        };
        if only_if_absent
            && target_shard
                .table
                .get(to_hash, to)
                .is_some_and(|entry| entry.is_live(now))
        {
            return (Some(false), WriteReceipt::NONE);
        }
        let mut receipt = self.write_locked(
            target_shard,
            to_hash,
            &Op::Put {
                key: to.clone(),
                value,
                expire_at,
                keep_ttl: false,
            },
            now,
        );
        receipt.merge(self.write_locked(
            &mut first,
            from_hash,
            &Op::Delete { key: from.clone() },
            now,
        ));
        (Some(true), receipt)
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
