//! What replication needs from the local store ([`Replica`]), and [`MemoryReplica`], a small `BTreeMap` implementation used by
//! the tests and as the executable specification of those rules.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::store::digest::{BucketDigests, BucketPositions};
use crate::store::record::merge;
use crate::store::state::collect_deletions;
use crate::store::state::encode::encoded_expiry_stamp;
use crate::store::{Record, RecordView, Touch};

/// The local store as replication sees it. Calls are synchronous and short; the engine calls
/// them from its tasks.
///
/// Every implementation follows [`merge`], the rule that makes every node converge.
///
/// Writes applied through this trait must not be handed back to replication as local writes.
pub trait Replica: Send + Sync + 'static {
    /// Applies a remote record by [`merge`]; true when the stored state changed.
    fn apply(&self, record: &Record, now_ms: u64, forget_before_ms: u64) -> bool;

    /// Applies a touch: when the key's expiry register is stamped `touch.value_stamp` and
    /// holds an earlier expiry, moves the expiry to `touch.expire_at`; true when it changed.
    fn apply_touch(&self, touch: &Touch) -> bool;

    /// Up to `max_records` records (tombstones included) after the opaque cursor `after`
    /// (`None` = from the start), and the cursor to continue from (`None` = done). Keys present
    /// for the whole iteration must be returned at least once (like Redis `SCAN`).
    fn snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
    ) -> (Vec<Record>, Option<Vec<u8>>);

    /// [`Replica::snapshot_chunk`] visiting borrowed records instead of returning copies: the
    /// write-ahead log's snapshots encode them straight into their buffer.
    fn visit_snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
        visit: &mut dyn FnMut(&RecordView<'_>),
    ) -> Option<Vec<u8>> {
        let (records, next) = self.snapshot_chunk(after, max_records);
        for record in &records {
            visit(&record.view());
        }
        next
    }

    /// The [`BUCKETS`](crate::store::digest::BUCKETS) digests (see [`BucketDigests`]).
    fn bucket_digests(&self) -> Vec<u64>;

    /// For each of the distinct `buckets`, in the order asked, the `(key, state hash)` of
    /// every stored key in it, tombstones included. One call makes one pass over the keyspace
    /// however many buckets it lists (a bucket outside `0..BUCKETS` lists nothing).
    fn bucket_keys(&self, buckets: &[usize]) -> Vec<Vec<(Bytes, u64)>>;

    /// The stored records of `keys` (absent keys are skipped).
    fn read_records(&self, keys: &[Bytes]) -> Vec<Record>;

    /// Drops the deletions made before `deleted_before_ms` (deleted fields, members and
    /// elements, and keys left with nothing); returns how many keys went.
    fn collect_tombstones(&self, deleted_before_ms: u64) -> usize;

    /// Whether the store holds nothing (the first-start rule).
    fn is_empty(&self) -> bool;

    /// Back-pressure of the store's own queues (a write-ahead log that a slow disc filled):
    /// `None` when records may be applied now, else a future that completes when they may. A
    /// link awaits it before it applies a batch, a snapshot chunk or repairs, and meanwhile
    /// keeps its peer's link alive: a slow disc slows replication down without blocking a
    /// thread or timing a peer out.
    fn room(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        None
    }
}

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<Bytes, Record>,
    digests: BucketDigests,
}

/// An in-memory [`Replica`] over a `BTreeMap` (tests, and the reference for the merge rules).
#[derive(Debug, Default)]
pub struct MemoryReplica {
    inner: Mutex<Inner>,
}

impl MemoryReplica {
    /// An empty replica.
    pub fn new() -> MemoryReplica {
        MemoryReplica::default()
    }

    /// Stores a local write unconditionally (the local engine's write path in tests).
    pub fn put_local(&self, record: Record) {
        let mut inner = self.inner.lock();
        if let Some(old) = inner.records.remove(&record.key) {
            inner.digests.remove(&old.key, old.view().version());
        }
        inner.digests.add(&record.key, record.view().version());
        inner.records.insert(record.key.clone(), record);
    }

    /// The stored record of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Record> {
        self.inner.lock().records.get(key).cloned()
    }

    /// Whether nothing is stored (not even a tombstone).
    pub fn is_empty(&self) -> bool {
        self.inner.lock().records.is_empty()
    }

    /// Number of stored records, tombstones included.
    pub fn len(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// Number of stored tombstones.
    pub fn tombstones(&self) -> usize {
        self.inner
            .lock()
            .records
            .values()
            .filter(|record| record.is_tombstone())
            .count()
    }

    /// One number summarising every bucket digest (for convergence assertions).
    pub fn digest(&self) -> u64 {
        self.inner
            .lock()
            .digests
            .sums()
            .iter()
            .enumerate()
            .fold(0u64, |acc, (index, sum)| {
                acc.rotate_left(7) ^ sum.wrapping_add(index as u64)
            })
    }
}

impl Replica for MemoryReplica {
    fn apply(&self, record: &Record, now_ms: u64, forget_before_ms: u64) -> bool {
        let mut inner = self.inner.lock();
        let stored = inner.records.get(&record.key).map(Record::view);
        let Ok(Some(merged)) = merge(stored.as_ref(), &record.view(), now_ms, forget_before_ms)
        else {
            return false;
        };
        if let Some(old) = inner.records.remove(&record.key) {
            inner.digests.remove(&old.key, old.view().version());
        }
        inner.digests.add(&merged.key, merged.view().version());
        inner.records.insert(merged.key.clone(), merged);
        true
    }

    fn apply_touch(&self, touch: &Touch) -> bool {
        let mut inner = self.inner.lock();
        let Some(record) = inner.records.get_mut(&touch.key) else {
            return false;
        };
        if record.is_tombstone()
            || encoded_expiry_stamp(&record.header, &record.payload) != Some(touch.value_stamp)
        {
            return false;
        }
        match &mut record.header.expire_at {
            Some(at) if *at < touch.expire_at => {
                *at = touch.expire_at;
                true
            }
            _ => false,
        }
    }

    fn snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
    ) -> (Vec<Record>, Option<Vec<u8>>) {
        let inner = self.inner.lock();
        let lower = match after {
            Some(key) => Bound::Excluded(Bytes::copy_from_slice(key)),
            None => Bound::Unbounded,
        };
        let records: Vec<Record> = inner
            .records
            .range((lower, Bound::Unbounded))
            .take(max_records.max(1))
            .map(|(_, record)| record.clone())
            .collect();
        let next = match records.last() {
            Some(last) if records.len() >= max_records.max(1) => Some(last.key.to_vec()),
            _ => None,
        };
        (records, next)
    }

    fn bucket_digests(&self) -> Vec<u64> {
        self.inner.lock().digests.sums().to_vec()
    }

    fn bucket_keys(&self, buckets: &[usize]) -> Vec<Vec<(Bytes, u64)>> {
        let positions = BucketPositions::new(buckets);
        let mut lists = vec![Vec::new(); buckets.len()];
        for record in self.inner.lock().records.values() {
            if let Some(position) = positions.of(&record.key) {
                lists[position].push((record.key.clone(), record.view().version()));
            }
        }
        lists
    }

    fn read_records(&self, keys: &[Bytes]) -> Vec<Record> {
        let inner = self.inner.lock();
        keys.iter()
            .filter_map(|key| inner.records.get(key).cloned())
            .collect()
    }

    fn collect_tombstones(&self, deleted_before_ms: u64) -> usize {
        let mut inner = self.inner.lock();
        let keys: Vec<Bytes> = inner
            .records
            .values()
            .filter(|record| record.header.has_dead)
            .map(|record| record.key.clone())
            .collect();
        let mut collected = 0;
        for key in keys {
            let Some(record) = inner.records.get(&key) else {
                continue;
            };
            let Ok(mut state) = record.state() else {
                continue;
            };
            let changed = collect_deletions(&mut state, deleted_before_ms);
            let gone =
                !state.has_live() && state.deleted_at().is_some_and(|at| at < deleted_before_ms);
            if !changed && !gone {
                continue;
            }
            let old = record.view().version();
            inner.digests.remove(&key, old);
            if gone {
                inner.records.remove(&key);
                collected += 1;
                continue;
            }
            let record = Record::from_state(key.clone(), &state);
            inner.digests.add(&key, record.view().version());
            inner.records.insert(key, record);
        }
        collected
    }

    fn is_empty(&self) -> bool {
        self.inner.lock().records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::digest::bucket_of;
    use crate::store::{Stamp, Value};

    fn stamp(hlc: u64, origin: u32) -> Stamp {
        Stamp { hlc, origin }
    }

    fn live(key: &str, hlc: u64, origin: u32, value: &str, expire_at: Option<u64>) -> Record {
        Record::live(
            Bytes::copy_from_slice(key.as_bytes()),
            stamp(hlc, origin),
            Value::String(Bytes::copy_from_slice(value.as_bytes())),
            expire_at,
        )
    }

    #[test]
    fn last_writer_wins_by_hlc_then_origin_in_any_order() {
        let writes = [
            live("k", 5, 1, "a", None),
            live("k", 5, 2, "b", None),
            live("k", 4, 9, "c", None),
        ];
        let forward = MemoryReplica::new();
        let backward = MemoryReplica::new();
        for record in &writes {
            forward.apply(record, 0, 0);
        }
        for record in writes.iter().rev() {
            backward.apply(record, 0, 0);
        }
        assert_eq!(forward.get(b"k"), Some(writes[1].clone()));
        assert_eq!(backward.get(b"k"), Some(writes[1].clone()));
        assert_eq!(forward.digest(), backward.digest());
        assert!(!forward.apply(&writes[0], 0, 0));
    }

    #[test]
    fn tombstone_beats_older_value_and_loses_to_newer() {
        let replica = MemoryReplica::new();
        replica.apply(&live("k", 5, 1, "a", None), 0, 0);
        assert!(replica.apply(
            &Record::tombstone(Bytes::from_static(b"k"), stamp(6, 1), 100),
            0,
            0
        ));
        assert!(!replica.apply(&live("k", 5, 2, "old", None), 0, 0));
        assert!(replica
            .get(b"k")
            .is_some_and(|record| record.is_tombstone()));
        assert!(replica.apply(&live("k", 7, 1, "new", None), 0, 0));
        assert_eq!(replica.get(b"k"), Some(live("k", 7, 1, "new", None)));
    }

    #[test]
    fn same_version_merges_the_later_expiry() {
        let replica = MemoryReplica::new();
        replica.apply(&live("k", 5, 1, "a", Some(1_000)), 0, 0);
        assert!(replica.apply(&live("k", 5, 1, "a", Some(2_000)), 0, 0));
        assert!(!replica.apply(&live("k", 5, 1, "a", Some(1_500)), 0, 0));
        assert_eq!(replica.get(b"k"), Some(live("k", 5, 1, "a", Some(2_000))));
    }

    #[test]
    fn expired_records_and_collected_tombstones_are_not_inserted() {
        let replica = MemoryReplica::new();
        assert!(!replica.apply(&live("k", 5, 1, "a", Some(10)), 50, 0));
        assert!(replica.is_empty());
        assert!(!replica.apply(
            &Record::tombstone(Bytes::from_static(b"k"), stamp(6, 1), 20),
            50,
            30
        ));
        assert!(replica.is_empty());
        replica.apply(&live("k", 5, 1, "a", Some(100)), 50, 0);
        // A newer version that arrives expired replaces the stored one, expired: an older,
        // longer-lived version elsewhere cannot come back.
        assert!(replica.apply(&live("k", 7, 1, "b", Some(60)), 70, 0));
        assert_eq!(replica.get(b"k"), Some(live("k", 7, 1, "b", Some(60))));
        assert!(!replica.apply(&live("k", 5, 1, "a", Some(100)), 70, 0));
    }

    #[test]
    fn touches_only_extend_the_same_version() {
        let replica = MemoryReplica::new();
        replica.apply(&live("k", 5, 1, "a", Some(1_000)), 0, 0);
        let touch = |hlc, expire_at| Touch {
            key: Bytes::from_static(b"k"),
            value_stamp: stamp(hlc, 1),
            expire_at,
        };
        assert!(!replica.apply_touch(&touch(4, 9_000)));
        assert!(replica.apply_touch(&touch(5, 2_000)));
        assert!(!replica.apply_touch(&touch(5, 1_500)));
        assert_eq!(replica.get(b"k"), Some(live("k", 5, 1, "a", Some(2_000))));
        replica.apply(
            &Record::tombstone(Bytes::from_static(b"k"), stamp(6, 1), 10),
            0,
            0,
        );
        assert!(!replica.apply_touch(&touch(5, 9_000)));
    }

    #[test]
    fn snapshot_chunks_cover_everything_once() {
        let replica = MemoryReplica::new();
        for index in 0..25 {
            replica.apply(&live(&format!("k{index:02}"), 1, 1, "v", None), 0, 0);
        }
        let mut cursor: Option<Vec<u8>> = None;
        let mut seen = Vec::new();
        loop {
            let (records, next) = replica.snapshot_chunk(cursor.as_deref(), 10);
            seen.extend(records.into_iter().map(|record| record.key));
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen[24], Bytes::from_static(b"k24"));
    }

    #[test]
    fn tombstone_collection_respects_the_cutoff() {
        let replica = MemoryReplica::new();
        replica.apply(
            &Record::tombstone(Bytes::from_static(b"a"), stamp(1, 1), 100),
            0,
            0,
        );
        replica.apply(
            &Record::tombstone(Bytes::from_static(b"b"), stamp(1, 1), 200),
            0,
            0,
        );
        replica.apply(&live("c", 1, 1, "v", None), 0, 0);
        assert_eq!(replica.collect_tombstones(150), 1);
        assert_eq!(replica.len(), 2);
        assert_eq!(
            replica.bucket_keys(&[bucket_of(b"a")])[0]
                .iter()
                .filter(|(key, _)| key == "a")
                .count(),
            0
        );
    }
}
