//! The one write path: every local change of the keyspace (commands, the session API, FLUSHALL,
//! RENAME, eviction) is an [`Op`] applied here under the key's shard lock, stamped and handed
//! to the [`WriteHook`] as the versioning asks, and answered with a [`WriteReceipt`].

use bytes::Bytes;

use super::{lru_now, MemoryEngine, Shard};
use crate::store::entry::Entry;
use crate::store::hook::{Versioning, WriteHook, WriteReceipt};
use crate::store::op::Op;
use crate::store::record::{RecordView, StateView, Touch};
use crate::store::stamp::Stamp;
use crate::store::unix_ms;
use crate::store::value::{encode_hash, Kind};

/// Builds the entry an op produces from the previous one (`None` = the key goes away).
fn build(op: &Op, old: Option<&Entry>, stamp: Option<Stamp>, now: u64) -> Option<Entry> {
    let lru = lru_now(now);
    let live = old.filter(|entry| entry.is_live(now));
    match op {
        Op::Put {
            key,
            value,
            expire_at,
        } => Some(Entry::new(
            key,
            value.kind(),
            &value.payload(),
            *expire_at,
            stamp,
            lru,
        )),
        Op::HashSet { key, fields } => {
            let (mut pairs, expire_at) = match live {
                Some(entry) if entry.kind() == Kind::Hash => {
                    (entry.hash_pairs(), entry.expire_at())
                }
                _ => (Vec::new(), None),
            };
            for (field, value) in fields {
                match pairs.iter_mut().find(|(name, _)| name == field) {
                    Some(pair) => pair.1 = value.clone(),
                    None => pairs.push((field.clone(), value.clone())),
                }
            }
            let payload = encode_hash(pairs.iter().map(|(f, v)| (&f[..], &v[..])));
            Some(Entry::new(key, Kind::Hash, &payload, expire_at, stamp, lru))
        }
        Op::HashDelete { key, fields } => {
            let entry = live.filter(|entry| entry.kind() == Kind::Hash)?;
            let payload = encode_hash(
                entry
                    .hash_fields()
                    .filter(|(name, _)| !fields.iter().any(|f| f == name)),
            );
            if payload.is_empty() {
                return None;
            }
            Some(Entry::new(
                key,
                Kind::Hash,
                &payload,
                entry.expire_at(),
                stamp,
                lru,
            ))
        }
        // A new expiry that is not a touch (added, removed, shortened) is a new version: it
        // carries the write's stamp, else replicas and log replay would keep the old expiry.
        Op::SetExpiry { key, expire_at } => live.map(|entry| match stamp {
            Some(_) => Entry::new(
                key,
                entry.kind(),
                entry.payload(),
                *expire_at,
                stamp,
                entry.lru(),
            ),
            None => entry.clone().with_expiry(*expire_at),
        }),
        Op::Delete { .. } | Op::FlushAll => None,
    }
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
                return WriteReceipt::NONE;
            }
        }
        let old = shard.table.get(hash, key);
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
                .and_then(|entry| Some((entry.expire_at()?, entry.stamp()?)));
            if let Some((current, value_stamp)) = current.filter(|(current, _)| at >= current) {
                if *at == current {
                    return WriteReceipt::NONE;
                }
                let Some(entry) = shard.table.get_mut(hash, key) else {
                    return WriteReceipt::NONE;
                };
                entry.set_expiry_in_place(*at);
                let touch = Touch {
                    key: key.clone(),
                    value_stamp,
                    expire_at: *at,
                };
                return hook.local_touch(touch, &entry_view(entry));
            }
        }
        let stamp = match (hook, versioning) {
            (Some(hook), Versioning::Stamped | Versioning::Replicated) => {
                Some(hook.stamp(old.and_then(Entry::stamp)))
            }
            _ => None,
        };
        let mut receipt = WriteReceipt::NONE;
        match build(op, old, stamp, now) {
            Some(entry) => {
                if let Some(hook) = hook.filter(|_| !old.is_some_and(|old| old.is_live(now))) {
                    hook.created(key);
                }
                if let (Some(hook), Some(_)) = (hook, stamp) {
                    receipt = hook.local_write(&entry_view(&entry));
                }
                let cost = entry.cost_info();
                let old = shard.insert_digested(hash, entry);
                self.account(shard, old.as_ref(), Some(&cost));
            }
            None => match (old, hook.zip(stamp)) {
                (Some(entry), Some((hook, stamp)))
                    if versioning == Versioning::Replicated && entry.is_live(now) =>
                {
                    // A replicated delete leaves a tombstone so it wins over older versions.
                    let tombstone = Entry::tombstone(key, stamp, now, lru_now(now));
                    receipt = hook.local_write(&entry_view(&tombstone));
                    let cost = tombstone.cost_info();
                    let old = shard.insert_digested(hash, tombstone);
                    self.account(shard, old.as_ref(), Some(&cost));
                }
                (Some(entry), versioned) if !entry.is_tombstone() => {
                    // One node in disc mode keeps no tombstone in memory but logs one, so
                    // replay removes the key.
                    if let (Versioning::Stamped, Some((hook, stamp))) = (versioning, versioned) {
                        receipt = hook.local_write(&RecordView {
                            key,
                            stamp,
                            state: StateView::Tombstone { deleted_at_ms: now },
                        });
                    }
                    if let Some(old) = shard.table.remove(hash, key) {
                        shard.digest_remove(&old);
                        self.account(shard, Some(&old), None);
                    }
                }
                _ => {}
            },
        }
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
        let value = source.value();
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

/// The replicated state of a stored entry (an unstamped entry has the smallest stamp),
/// borrowed from it.
pub(super) fn entry_view(entry: &Entry) -> RecordView<'_> {
    let state = match entry.deleted_at() {
        Some(deleted_at_ms) => StateView::Tombstone { deleted_at_ms },
        None => StateView::Live {
            value: entry.value_view(),
            expire_at: entry.expire_at(),
        },
    };
    RecordView {
        key: entry.key(),
        stamp: entry.stamp().unwrap_or(Stamp { hlc: 0, origin: 0 }),
        state,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::replica::record_entry;
    use super::super::testing::put;
    use super::*;
    use crate::store::engine::EngineConfig;
    use crate::store::hook::testing::RecordingHook;
    use crate::store::hook::Versioning;
    use crate::store::record::Record;
    use crate::store::value::Value;

    /// The log and snapshots encode stored entries through `entry_view`; copied, the view
    /// must give back exactly the record the entry was built from.
    #[test]
    fn entry_views_give_back_the_stored_records() {
        let stamp = Stamp { hlc: 42, origin: 3 };
        let records = [
            Record::live(
                Bytes::from_static(b"s"),
                stamp,
                Value::String(Bytes::from_static(b"value")),
                Some(99),
            ),
            Record::live(
                Bytes::from_static(b"h"),
                stamp,
                Value::Hash(vec![
                    (Bytes::from_static(b"f1"), Bytes::from_static(b"v1")),
                    (Bytes::from_static(b""), Bytes::from(vec![b'x'; 300])),
                ]),
                None,
            ),
            Record::tombstone(Bytes::from_static(b"t"), stamp, 1234),
        ];
        for record in records {
            let entry = record_entry(&record, 0);
            assert_eq!(entry_view(&entry).to_record(), record);
            assert_eq!(entry_view(&entry).size(), record.size());
        }
    }

    #[test]
    fn write_path_applies_and_records() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let hook = Arc::new(RecordingHook::new(Versioning::Stamped));
        assert!(engine.set_hook(hook.clone()));
        let now = unix_ms();
        let mut receipts = vec![engine.apply(&put("a", "1", None), now)];
        receipts.push(engine.apply(&put("b", "2", Some(now + 60_000)), now));
        receipts.push(engine.apply(
            &Op::HashSet {
                key: Bytes::from_static(b"h"),
                fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
            },
            now,
        ));
        assert_eq!(engine.len(), 3);
        assert_eq!(engine.stats().volatile_keys, 1);
        {
            let mut access = engine.key(b"a");
            assert_eq!(
                access.get().map(|entry| entry.payload().to_vec()),
                Some(b"1".to_vec())
            );
        }
        receipts.push(engine.apply(
            &Op::Delete {
                key: Bytes::from_static(b"a"),
            },
            now,
        ));
        assert_eq!(engine.len(), 2);
        let recorded = hook.recorded();
        assert_eq!(recorded.local.len(), 4);
        assert_eq!(
            recorded.local[0],
            Record::live(
                Bytes::from_static(b"a"),
                Stamp { hlc: 1, origin: 1 },
                Value::String(Bytes::from_static(b"1")),
                None
            )
        );
        // One node in disc mode logs a tombstone for the delete but keeps none in memory.
        assert_eq!(
            recorded.local[3],
            Record::tombstone(Bytes::from_static(b"a"), Stamp { hlc: 4, origin: 1 }, now)
        );
        // Each write's receipt carries what its own record asked of the hook.
        let sequences: Vec<_> = receipts.iter().map(|receipt| receipt.replicated).collect();
        assert_eq!(
            sequences,
            vec![Some((1, 1)), Some((2, 2)), Some((3, 3)), Some((4, 4))]
        );
        let mut merged = WriteReceipt::NONE;
        for receipt in receipts {
            merged.merge(receipt);
        }
        assert_eq!(merged.replicated, Some((1, 4)));
    }

    /// The hook stamps a write above the version it replaces, whoever wrote that version:
    /// the write path must hand it the stored stamp, a tombstone's included.
    #[test]
    fn the_hook_is_told_the_stamp_each_write_replaces() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let hook = Arc::new(RecordingHook::new(Versioning::Replicated));
        assert!(engine.set_hook(hook.clone()));
        let now = unix_ms();
        let remote = Stamp {
            hlc: 1 << 40,
            origin: 9,
        };
        let record = Record::live(
            Bytes::from_static(b"k"),
            remote,
            Value::String(Bytes::from_static(b"theirs")),
            None,
        );
        assert!(engine.merge_record(&record, now, 0));
        let _ = engine.apply(&put("k", "mine", None), now);
        let _ = engine.apply(
            &Op::Delete {
                key: Bytes::from_static(b"k"),
            },
            now,
        );
        let _ = engine.apply(&put("k", "again", None), now);
        let _ = engine.apply(&put("new", "1", None), now);
        let recorded = hook.recorded();
        let stamps: Vec<Stamp> = recorded.local.iter().map(|record| record.stamp).collect();
        assert_eq!(
            recorded.replaced,
            vec![Some(remote), Some(stamps[0]), Some(stamps[1]), None]
        );
    }

    #[test]
    fn replay_is_deterministic() {
        let now = 1_000_000;
        let ops = vec![
            put("k", "v", Some(now + 5000)),
            Op::SetExpiry {
                key: Bytes::from_static(b"k"),
                expire_at: None,
            },
            Op::HashSet {
                key: Bytes::from_static(b"h"),
                fields: vec![(Bytes::from_static(b"a"), Bytes::from_static(b"1"))],
            },
            Op::HashDelete {
                key: Bytes::from_static(b"h"),
                fields: vec![Bytes::from_static(b"a")],
            },
        ];
        let first = MemoryEngine::new(EngineConfig::default());
        let second = MemoryEngine::new(EngineConfig::default());
        for op in &ops {
            let _ = first.apply(op, now);
            let _ = second.apply(op, now);
        }
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_eq!(first.used_bytes(), second.used_bytes());
        let mut access = first.key_at(b"k", now);
        assert_eq!(access.get().and_then(|entry| entry.expire_at()), None);
    }

    #[test]
    fn a_new_expiry_of_an_unversioned_key_is_rewritten_in_place() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        let _ = engine.apply(&put("s", "data", Some(now + 1_000)), now);
        let used = engine.used_bytes();
        let expire = |at| Op::SetExpiry {
            key: Bytes::from_static(b"s"),
            expire_at: at,
        };
        let _ = engine.key_at(b"s", now).write(expire(Some(now + 60_000)));
        let mut access = engine.key_at(b"s", now);
        let entry = access.get().cloned();
        assert_eq!(
            entry.as_ref().and_then(Entry::expire_at),
            Some(now + 60_000)
        );
        assert_eq!(entry.as_ref().map(Entry::payload), Some(&b"data"[..]));
        drop(access);
        assert_eq!(engine.used_bytes(), used);
        assert_eq!(engine.stats().volatile_keys, 1);
        // Removing the expiry still changes the entry's layout (and its volatility).
        let _ = engine.key_at(b"s", now).write(expire(None));
        assert_eq!(engine.stats().volatile_keys, 0);
        assert_eq!(
            engine.key_at(b"s", now).get().and_then(Entry::expire_at),
            None
        );
    }

    #[test]
    fn rename_moves_value_and_ttl() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        let _ = engine.apply(&put("a", "1", Some(now + 10_000)), now);
        let _ = engine.apply(&put("b", "2", None), now);
        assert_eq!(
            engine
                .rename(&Bytes::from_static(b"a"), &Bytes::from_static(b"b"), true)
                .0,
            Some(false)
        );
        assert_eq!(
            engine
                .rename(&Bytes::from_static(b"a"), &Bytes::from_static(b"c"), false)
                .0,
            Some(true)
        );
        assert_eq!(
            engine
                .rename(&Bytes::from_static(b"zz"), &Bytes::from_static(b"c"), false)
                .0,
            None
        );
        let mut access = engine.key(b"c");
        assert_eq!(
            access.get().and_then(|entry| entry.expire_at()),
            Some(now + 10_000)
        );
        drop(access);
        assert!(engine.key(b"a").get().is_none());
    }
}
