//! Changes from elsewhere and the views replication needs: merging records (from a peer, or
//! recovered from disc in bulk) by [`crate::store::record::merge`], touches, snapshot chunks,
//! the anti-entropy digests and key lists, and tombstone collection. Nothing merged here is
//! handed back to the hook as a local write.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::{lru_now, MemoryEngine, Shard};
use crate::store::digest::{BucketPositions, BUCKETS};
use crate::store::entry::Entry;
use crate::store::hook::{MergedChange, WriteHook};
use crate::store::record::{merge, Record, RecordView, Touch};
use crate::store::state::{collect_deletions, encode, view};
use crate::store::value::Value;

/// Progress of [`MemoryEngine::load_records`]: called with the number of records of each shard
/// done.
pub type BulkLoad<'a> = &'a (dyn Fn(u64) + Sync);

/// What a client of this node sees of a key at `now_ms`: its value and expiry (`None`: nothing).
fn visible(
    live: bool,
    state: impl FnOnce() -> Option<crate::store::state::model::State>,
    expire_at: Option<u64>,
) -> Option<(Value, Option<u64>)> {
    if !live {
        return None;
    }
    Some((view::to_value(&state()?)?, expire_at))
}

/// What replacing the entry `before` by `after` (merged from `incoming`) amounts to for a
/// client of this node at `now_ms`.
fn change(before: Option<&Entry>, incoming: &Record, after: &Record, now_ms: u64) -> MergedChange {
    let expired_at = |at: Option<u64>| at.is_some_and(|at| at <= now_ms);
    let old = before.and_then(|entry| {
        visible(
            entry.is_live(now_ms),
            || entry.state().ok(),
            entry.expire_at(),
        )
    });
    let new = visible(
        !after.is_tombstone() && !expired_at(after.expire_at()),
        || after.state().ok(),
        after.expire_at(),
    );
    match (old, new) {
        (None, None) => MergedChange::Unseen,
        (Some(_), None) if !incoming.is_tombstone() && expired_at(incoming.expire_at()) => {
            MergedChange::Expired
        }
        (Some(_), None) => MergedChange::Deleted,
        (None, Some(_)) => MergedChange::Created,
        (Some((old, old_expiry)), Some((new, expiry))) => {
            if old == new && old_expiry != expiry {
                MergedChange::Expiry(expiry)
            } else if parts_removed(&old, &new) {
                MergedChange::FieldsRemoved
            } else {
                MergedChange::Replaced
            }
        }
    }
}

/// Whether `new` is the collection `old` with some fields, members or elements removed and the
/// others unchanged.
fn parts_removed(old: &Value, new: &Value) -> bool {
    fn subset<T: PartialEq>(old: &[T], new: &[T]) -> bool {
        new.len() < old.len() && new.iter().all(|part| old.contains(part))
    }
    match (old, new) {
        (Value::Hash(old), Value::Hash(new)) => subset(old, new),
        (Value::Set(old), Value::Set(new)) => subset(old, new),
        (Value::ZSet(old), Value::ZSet(new)) => subset(old, new),
        (Value::List(old), Value::List(new)) => subset(old, new),
        _ => false,
    }
}

impl MemoryEngine {
    /// Loads recovered records (at start, before the write-ahead log is installed) through the
    /// same merge rule as [`Replica::apply`], a shard at a time: every key is hashed once, each
    /// shard's table is sized once for its records, and each shard lock is taken once, from up
    /// to `threads` threads. `loaded` is called with the number of records of each shard done.
    /// Returns the records that changed the store.
    pub fn load_records(
        &self,
        records: &[Record],
        now_ms: u64,
        forget_before_ms: u64,
        threads: usize,
        loaded: BulkLoad<'_>,
    ) -> u64 {
        let mut by_shard: Vec<Vec<(u64, usize)>> = vec![Vec::new(); self.shards.len()];
        for (index, record) in records.iter().enumerate() {
            let hash = self.hash(&record.key);
            by_shard[Self::shard_of(hash)].push((hash, index));
        }
        let next = AtomicUsize::new(0);
        let changed = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| loop {
                    let shard_index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(items) = by_shard.get(shard_index) else {
                        break;
                    };
                    let count =
                        self.load_shard(shard_index, items, records, now_ms, forget_before_ms);
                    changed.fetch_add(count, Ordering::Relaxed);
                    loaded(items.len() as u64);
                });
            }
        });
        changed.into_inner()
    }

    fn load_shard(
        &self,
        shard_index: usize,
        items: &[(u64, usize)],
        records: &[Record],
        now_ms: u64,
        forget_before_ms: u64,
    ) -> u64 {
        let mut changed = 0;
        let mut shard = self.shards[shard_index].lock();
        shard.table.reserve(items.len());
        for &(hash, index) in items {
            let Some(record) = records.get(index) else {
                continue;
            };
            if self
                .merge_locked(&mut shard, hash, record, now_ms, forget_before_ms)
                .is_some()
            {
                changed += 1;
            }
        }
        changed
    }

    /// Merges a record into its locked shard (the replication merge rule), with memory
    /// accounting and digests; returns the merged record if the store changed, with the one
    /// it replaced.
    fn merge_locked(
        &self,
        shard: &mut Shard,
        hash: u64,
        record: &Record,
        now_ms: u64,
        forget_before_ms: u64,
    ) -> Option<(Record, Option<Entry>)> {
        let stored = shard.table.get(hash, &record.key).map(Entry::view);
        // A record that does not decode was refused when it arrived; should one get here, it
        // changes nothing.
        let merged = merge(stored.as_ref(), &record.view(), now_ms, forget_before_ms).ok()??;
        let entry = Entry::of_record(&merged.view(), lru_now(now_ms));
        let cost = entry.cost_info();
        let old = shard.insert_digested(hash, entry);
        self.account(shard, old.as_ref(), Some(&cost));
        self.touch_watched(shard, &record.key);
        Some((merged, old))
    }

    /// The installed hook's back-pressure ([`WriteHook::room`]): what a caller about to merge
    /// records from elsewhere awaits first, off any lock.
    pub fn room(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        self.hook().and_then(WriteHook::room)
    }

    /// Merges a record from elsewhere (a peer) by [`crate::store::record::merge`] and hands
    /// the result to the hook as merged, never as a local write; true when the store changed.
    pub fn merge_record(&self, record: &Record, now_ms: u64, forget_before_ms: u64) -> bool {
        let (hash, mut shard) = self.shard_for(&record.key);
        let Some((merged, stored)) =
            self.merge_locked(&mut shard, hash, record, now_ms, forget_before_ms)
        else {
            return false;
        };
        if let Some(hook) = self.hook() {
            hook.merged(&merged.view(), &|| {
                change(stored.as_ref(), record, &merged, now_ms)
            });
        }
        true
    }

    /// Applies a touch from elsewhere: when the key's expiry register is stamped
    /// `touch.value_stamp` and holds an earlier expiry, moves the expiry to `touch.expire_at`;
    /// true when it changed.
    pub fn apply_touch(&self, touch: &Touch) -> bool {
        let (hash, mut shard) = self.shard_for(&touch.key);
        let Some(entry) = shard.table.get_mut(hash, &touch.key) else {
            return false;
        };
        if entry.is_tombstone() || entry.expiry_stamp() != Some(touch.value_stamp) {
            return false;
        }
        let touched = match entry.expire_at() {
            Some(at) if at < touch.expire_at => entry.set_expiry_in_place(touch.expire_at),
            _ => false,
        };
        if let (true, Some(hook)) = (touched, self.hook()) {
            hook.merged(&entry.view(), &|| {
                MergedChange::Expiry(Some(touch.expire_at))
            });
        }
        if touched {
            self.touch_watched(&mut shard, &touch.key);
        }
        touched
    }

    /// Up to `max_records` records (tombstones included) after the opaque cursor `after`
    /// (`None` = from the start), and the cursor to continue from (`None` = done). Keys present
    /// for the whole iteration are returned at least once (like Redis `SCAN`).
    pub fn snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
    ) -> (Vec<Record>, Option<Vec<u8>>) {
        let mut records = Vec::new();
        let next = self.visit_snapshot_chunk(after, max_records, &mut |record| {
            records.push(record.to_record());
        });
        (records, next)
    }

    /// [`MemoryEngine::snapshot_chunk`] visiting borrowed records instead of returning
    /// copies: the write-ahead log's snapshots encode them straight into their buffer.
    pub fn visit_snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
        visit: &mut dyn FnMut(&RecordView<'_>),
    ) -> Option<Vec<u8>> {
        let cursor = after
            .and_then(|after| <[u8; 8]>::try_from(after).ok())
            .map_or(0, u64::from_le_bytes);
        let next = self.scan_entries(cursor, max_records.max(1), true, |entry| {
            visit(&entry.view());
        });
        (next != 0).then(|| next.to_le_bytes().to_vec())
    }

    /// The [`BUCKETS`] digests of the stored versions.
    pub fn bucket_digests(&self) -> Vec<u64> {
        let mut sums = vec![0u64; BUCKETS];
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (sum, shard_sum) in sums.iter_mut().zip(shard.digests.sums()) {
                *sum = sum.wrapping_add(*shard_sum);
            }
        }
        sums
    }

    /// For each of the distinct `buckets`, in the order asked, the `(key, state hash)` of every
    /// stored version in it, tombstones included, in one pass over the keyspace.
    pub fn bucket_keys(&self, buckets: &[usize]) -> Vec<Vec<(Bytes, u64)>> {
        let positions = BucketPositions::new(buckets);
        let mut lists = vec![Vec::new(); buckets.len()];
        if buckets.is_empty() {
            return lists;
        }
        for shard in self.shards.iter() {
            shard.lock().table.for_each(|entry| {
                if let Some(version) = entry.version() {
                    if let Some(position) = positions.of(entry.key()) {
                        lists[position].push((Bytes::copy_from_slice(entry.key()), version));
                    }
                }
            });
        }
        lists
    }

    /// The stored records of `keys` (absent keys are skipped).
    pub fn read_records(&self, keys: &[Bytes]) -> Vec<Record> {
        keys.iter()
            .filter_map(|key| {
                let (hash, shard) = self.shard_for(key);
                shard
                    .table
                    .get(hash, key)
                    .map(|entry| entry.view().to_record())
            })
            .collect()
    }

    /// Drops the deletions made before `deleted_before_ms`: deleted fields, members and
    /// elements out of their keys, and keys left with nothing; returns how many keys went.
    pub fn collect_tombstones(&self, deleted_before_ms: u64) -> usize {
        let mut collected = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut doomed = Vec::new();
            shard.table.for_each(|entry| {
                if entry.has_dead() {
                    doomed.push(Bytes::copy_from_slice(entry.key()));
                }
            });
            for key in doomed {
                let hash = self.hash(&key);
                let Some(entry) = shard.table.get(hash, &key) else {
                    continue;
                };
                let Ok(mut state) = entry.state() else {
                    continue;
                };
                let changed = collect_deletions(&mut state, deleted_before_ms);
                let gone = !state.has_live()
                    && state.deleted_at().is_some_and(|at| at < deleted_before_ms);
                if !changed && !gone {
                    continue;
                }
                if gone {
                    if let Some(old) = shard.table.remove(hash, &key) {
                        shard.digest_remove(&old);
                        self.account(&mut shard, Some(&old), None);
                        collected += 1;
                    }
                    continue;
                }
                let (header, payload) = encode(&state, true);
                let entry = Entry::new(&key, &header, &payload, entry.lru());
                let cost = entry.cost_info();
                let old = shard.insert_digested(hash, entry);
                self.account(&mut shard, old.as_ref(), Some(&cost));
            }
        }
        collected
    }

    /// Whether nothing is stored, not even a tombstone (the first-start rule).
    pub fn holds_nothing(&self) -> bool {
        self.shards
            .iter()
            .all(|shard| shard.lock().table.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::put;
    use super::super::SHARDS;
    use super::*;
    use crate::store::engine::EngineConfig;
    use crate::store::stamp::Stamp;
    use crate::store::unix_ms;
    use crate::store::value::Value;

    /// One call lists several buckets in one pass: each list holds exactly the state hashes
    /// of the stamped keys (tombstones included) of its bucket, in the order the buckets were
    /// asked.
    #[test]
    fn bucket_keys_lists_the_asked_buckets_in_one_call() {
        use crate::store::digest::bucket_of;
        let engine = MemoryEngine::new(EngineConfig::default());
        let stamp = |hlc| Stamp { hlc, origin: 7 };
        let mut expected: Vec<Vec<(Bytes, u64)>> = vec![Vec::new(); BUCKETS];
        for index in 0..2000u64 {
            let key = Bytes::from(format!("session:{index}"));
            let record = if index % 10 == 0 {
                Record::tombstone(key.clone(), stamp(index + 1), 1)
            } else {
                Record::live(
                    key.clone(),
                    stamp(index + 1),
                    Value::String(Bytes::from_static(b"v")),
                    None,
                )
            };
            assert!(engine.merge_record(&record, 2, 0));
            expected[bucket_of(&key)].push((key, record.view().version()));
        }
        // An unstamped (never replicated) entry is in no bucket.
        let _ = engine.apply(&put("local", "v", None), unix_ms());
        let asked = [200, 3, 17, 255, 0];
        let lists = engine.bucket_keys(&asked);
        assert_eq!(lists.len(), asked.len());
        for (bucket, mut list) in asked.iter().zip(lists) {
            list.sort();
            let mut want = expected[*bucket].clone();
            want.sort();
            assert!(!want.is_empty());
            assert_eq!(list, want, "bucket {bucket}");
        }
        let all: Vec<usize> = (0..BUCKETS).collect();
        let total: usize = engine.bucket_keys(&all).iter().map(Vec::len).sum();
        assert_eq!(total, 2000);
        assert_eq!(engine.bucket_keys(&[]), Vec::<Vec<(Bytes, u64)>>::new());
        assert_eq!(engine.bucket_keys(&[BUCKETS]), vec![Vec::new()]);
    }

    /// The bulk loader at start keeps exactly what record-by-record merging keeps: the newest
    /// version of a key whatever the order, no expired value, no tombstone past the grace, and
    /// the same memory accounting and digests.
    #[test]
    fn load_records_matches_applying_one_by_one() {
        let stamp = |hlc| Stamp { hlc, origin: 3 };
        let live = |key: &str, hlc, value: &'static str, expire_at| {
            Record::live(
                Bytes::copy_from_slice(key.as_bytes()),
                stamp(hlc),
                Value::String(Bytes::from_static(value.as_bytes())),
                expire_at,
            )
        };
        let (now, forget_before) = (10_000, 5_000);
        let mut records: Vec<Record> = (0..3000u64)
            .map(|index| live(&format!("session:{index}"), index + 1, "v", None))
            .collect();
        records.push(live("dup", 20, "new", None));
        records.push(live("dup", 10, "old", None));
        records.push(live("expired", 30, "v", Some(now)));
        records.push(Record::tombstone(
            Bytes::from_static(b"old-delete"),
            stamp(40),
            4_999,
        ));
        records.push(Record::tombstone(
            Bytes::from_static(b"new-delete"),
            stamp(41),
            5_000,
        ));
        records.push(live("new-delete", 12, "v", None));

        let loaded = MemoryEngine::new(EngineConfig::default());
        let calls = AtomicU64::new(0);
        let counted = AtomicU64::new(0);
        let changed = loaded.load_records(&records, now, forget_before, 3, &|count| {
            calls.fetch_add(1, Ordering::Relaxed);
            counted.fetch_add(count, Ordering::Relaxed);
        });
        let applied = MemoryEngine::new(EngineConfig::default());
        let mut applied_changed = 0;
        for record in &records {
            if applied.merge_record(record, now, forget_before) {
                applied_changed += 1;
            }
        }
        // 3000 sessions, "dup" once (the older version loses), "new-delete" once.
        assert_eq!(changed, 3002);
        assert_eq!(applied_changed, 3002);
        assert_eq!(calls.into_inner(), SHARDS as u64);
        assert_eq!(counted.into_inner(), records.len() as u64);
        assert_eq!(loaded.len(), applied.len());
        assert_eq!(loaded.used_bytes(), applied.used_bytes());
        assert_eq!(loaded.bucket_digests(), applied.bucket_digests());
        let keys: Vec<Bytes> = records.iter().map(|record| record.key.clone()).collect();
        assert_eq!(loaded.read_records(&keys), applied.read_records(&keys));
        let read = loaded.read_records(&[
            Bytes::from_static(b"dup"),
            Bytes::from_static(b"expired"),
            Bytes::from_static(b"old-delete"),
            Bytes::from_static(b"new-delete"),
        ]);
        assert_eq!(
            read,
            vec![
                live("dup", 20, "new", None),
                Record::tombstone(Bytes::from_static(b"new-delete"), stamp(41), 5_000),
            ]
        );
    }
}

#[cfg(test)]
mod collection_tests {
    use super::*;
    use crate::store::engine::EngineConfig;
    use crate::store::op::Op;
    use crate::store::stamp::Stamp;
    use crate::store::state::model::{Body, Cell, Expiry, Register, State};

    /// Deleted fields leave their keys once collected, a key left with nothing goes, and
    /// newer deletions stay: the same rule as whole-key tombstones.
    #[test]
    fn collection_drops_old_deleted_fields_and_empty_keys() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let stamp = Stamp { hlc: 5, origin: 1 };
        let cell = |deleted_at: Option<u64>| match deleted_at {
            Some(at) => Cell::of(Register::dead(stamp, at)),
            None => Cell::of(Register::value(stamp, Bytes::from_static(b"v"))),
        };
        let hash = |fields: Vec<(&'static str, Option<u64>)>| State {
            expiry: Expiry { at: None, stamp },
            body: Body::Hash(
                fields
                    .into_iter()
                    .map(|(name, deleted)| (Bytes::from_static(name.as_bytes()), cell(deleted)))
                    .collect(),
            ),
        };
        let records = [
            Record::from_state(
                Bytes::from_static(b"mixed"),
                &hash(vec![("a", None), ("b", Some(10)), ("c", Some(90))]),
            ),
            Record::from_state(Bytes::from_static(b"gone"), &hash(vec![("a", Some(10))])),
            Record::from_state(Bytes::from_static(b"recent"), &hash(vec![("a", Some(90))])),
        ];
        for record in &records {
            assert!(engine.merge_record(record, 100, 0));
        }
        assert_eq!(engine.collect_tombstones(50), 1);
        let read = engine.read_records(&[
            Bytes::from_static(b"mixed"),
            Bytes::from_static(b"gone"),
            Bytes::from_static(b"recent"),
        ]);
        assert_eq!(read.len(), 2);
        assert_eq!(
            read[0].state(),
            Ok(hash(vec![("a", None), ("c", Some(90))]))
        );
        assert_eq!(read[1], records[2]);
        assert_eq!(engine.len(), 1);
        // The digests follow: a fresh engine holding the same states has the same ones.
        let fresh = MemoryEngine::new(EngineConfig::default());
        for record in &read {
            assert!(fresh.merge_record(record, 100, 0));
        }
        assert_eq!(fresh.bucket_digests(), engine.bucket_digests());
        let _ = Op::FlushAll;
    }
}
