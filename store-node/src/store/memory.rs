//! [`MemoryEngine`]: the keyspace in sharded chained tables, the single write path, lazy and
//! active expiry, memory accounting with high/low watermarks, and sampled eviction.
//!
//! With replication installed ([`MemoryEngine::set_replication`]) every local write is stamped
//! with the hybrid logical clock, deletes leave tombstones (absent to every read), per-bucket
//! digests are kept up to date, and the resulting state of the key is submitted as a
//! [`Record`]; remote records come in through the [`Replica`] implementation and are merged by
//! [`replica::merge`] without being fed back. Without replication none of this runs: entries
//! carry no stamp and the write path is the single-node one.

use std::cell::Cell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use foldhash::fast::FixedState;
use parking_lot::{Mutex, MutexGuard};

use super::entry::{encode_hash, Entry, Kind, Stamp};
use super::op::{Op, OpSink, Value};
use super::table::Table;
use super::unix_ms;
use crate::config::EvictionPolicy;
use crate::persistence::Persistence;
use crate::replication::clock::{system_wall_clock, HybridClock};
use crate::replication::record::{
    key_hash, BucketDigests, Record, RecordState, RecordView, StateView, Touch, ValueView, BUCKETS,
};
use crate::replication::replica::BucketPositions;
use crate::replication::{replica, Replica, Replication};

thread_local! {
    /// The lowest and highest replication sequence numbers submitted by local writes on this
    /// thread since the last [`take_submitted_seq`]. Commands run synchronously, so the server
    /// reads them right after executing one to learn what the client must wait for
    /// (`--write-ack`).
    static SUBMITTED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Returns and clears the `(first, last)` sequence numbers submitted to replication by writes
/// on this thread (`(0, 0)` when none). Call it right after a synchronous command, before any
/// `.await`.
pub fn take_submitted_seq() -> (u64, u64) {
    SUBMITTED.with(|submitted| submitted.replace((0, 0)))
}

fn note_submitted(seq: u64) {
    SUBMITTED.with(|submitted| {
        let (first, last) = submitted.get();
        let first = if first == 0 { seq } else { first.min(seq) };
        submitted.set((first, last.max(seq)));
    });
}

thread_local! {
    /// The highest write-ahead log sequence appended by local writes on this thread since the
    /// last [`take_logged`], and whether an append failed (disc mode).
    static LOGGED: Cell<(u64, bool)> = const { Cell::new((0, false)) };
}

/// What the local writes on this thread since the last call appended to the write-ahead log:
/// the highest sequence for [`Persistence::wait_durable`] (0 when none) and whether an append
/// failed (the reply must then be the log's `MISCONF` error). Call it right after a
/// synchronous command, before any `.await`, like [`take_submitted_seq`].
pub fn take_logged() -> (u64, bool) {
    LOGGED.with(|logged| logged.replace((0, false)))
}

/// How far past the wall clock a recovered stamp may move the local clock of a node without
/// peers (the replication engine's own bound).
const MAX_CLOCK_DRIFT_MS: u64 = 60_000;

/// Shard count (a power of two); the top bits of a key's hash pick the shard.
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
/// Keys with a TTL an expiry sweep checks in a shard before it may stop early (Redis's
/// `ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP`).
const SWEEP_SAMPLE: u64 = 20;
/// A sweep continues in a shard while more than 1 in this many checked keys had expired
/// (Redis's acceptable stale share, 10%).
const SWEEP_STALE_RATIO: u64 = 10;
/// Quiet shard visits (see [`SWEEP_SAMPLE`]) after which an expiry sweep tick ends.
const SWEEP_QUIET_SHARDS: usize = 4;
/// Keys sampled per eviction (Redis `maxmemory-samples`).
const EVICTION_SAMPLES: usize = 5;

/// Estimated memory one entry costs: its blob rounded to the allocator's 16-byte classes plus
/// the allocator header, a table node (24 B, a 32 B chunk) and a bucket slot.
pub fn entry_cost(entry: &Entry) -> i64 {
    let blob = (entry.blob_len() + 8).div_ceil(16) * 16;
    (blob.max(32) + 32 + 8) as i64
}

/// Memory limits of an engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Limit in bytes; 0 = unlimited (no alarm, no OOM).
    pub limit_bytes: u64,
    /// Fraction of the limit at which the alarm is raised.
    pub high_watermark: f64,
    /// Fraction of the limit below which the alarm clears.
    pub low_watermark: f64,
    /// What to do with growth writes while the alarm is raised.
    pub policy: EvictionPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limit_bytes: 0,
            high_watermark: 0.8,
            low_watermark: 0.7,
            policy: EvictionPolicy::Noeviction,
        }
    }
}

/// A snapshot of memory accounting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryStatus {
    /// Estimated bytes used by data and per-key overhead.
    pub used_bytes: u64,
    /// The limit (0 = unlimited).
    pub limit_bytes: u64,
    /// Alarm threshold in bytes.
    pub high_watermark_bytes: u64,
    /// Alarm clear threshold in bytes.
    pub low_watermark_bytes: u64,
    /// Whether the alarm is raised.
    pub alarm: bool,
    /// The eviction policy.
    pub policy: EvictionPolicy,
    /// Estimated bytes held by replication tombstones. Not part of `used_bytes` and not
    /// counted against the limit: evicting a key leaves a tombstone, and if tombstones counted,
    /// eviction of small keys would free almost nothing and never get below the watermark.
    /// Tombstones are collected after the grace period (docs/replication.md).
    pub tombstone_bytes: u64,
}

/// Counters summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys.
    pub keys: u64,
    /// Keys with an expiry.
    pub volatile_keys: u64,
    /// Keys removed because they expired.
    pub expired: u64,
    /// Keys removed by eviction.
    pub evicted: u64,
    /// Reads that found the key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
}

#[derive(Debug)]
struct Shard {
    table: Table,
    volatile: u64,
    /// Tombstones stored in `table` (not keys).
    tombstones: u64,
    /// Their estimated bytes (outside `used`).
    tombstone_bytes: i64,
    /// Replication digests of the stamped entries of this shard (summed over shards).
    digests: BucketDigests,
    used: i64,
    sweep_cursor: u64,
    random: u64,
    expired: u64,
    evicted: u64,
    hits: u64,
    misses: u64,
}

impl Shard {
    /// Removes a stored version from the replication digests (unstamped entries are not
    /// replicated, so they cost nothing here).
    fn digest_remove(&mut self, entry: &Entry) {
        if let Some(stamp) = entry.stamp() {
            self.digests.remove(entry.key(), stamp);
        }
    }

    /// Inserts `entry` in place of the stored version of its key (returned), keeping the
    /// digests with one hash of the key for both versions.
    fn insert_digested(&mut self, hash: u64, entry: Entry) -> Option<Entry> {
        let new = entry.stamp();
        let digest_hash = new.map(|_| key_hash(entry.key()));
        let old = self.table.insert(hash, entry);
        let previous = old.as_ref().and_then(Entry::stamp);
        if previous.is_some() || new.is_some() {
            let digest_hash = match (digest_hash, &old) {
                (Some(digest_hash), _) => digest_hash,
                (None, Some(old)) => key_hash(old.key()),
                (None, None) => return old,
            };
            self.digests.replace(digest_hash, previous, new);
        }
        old
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: only used to pick eviction sample positions.
        let mut value = self.random;
        value ^= value << 13;
        value ^= value >> 7;
        value ^= value << 17;
        self.random = value;
        value
    }
}

/// The in-memory keyspace.
pub struct MemoryEngine {
    shards: Box<[Mutex<Shard>]>,
    hasher: FixedState,
    used: AtomicI64,
    tombstone_bytes: AtomicI64,
    alarm: AtomicBool,
    limit: u64,
    high: u64,
    low: u64,
    policy: EvictionPolicy,
    sink: OnceLock<Arc<dyn OpSink>>,
    replication: OnceLock<Replication>,
    persistence: OnceLock<Arc<Persistence>>,
    // Stamps local writes in disc mode without replication (origin: the persistent node id),
    // so they become records for the log.
    local_clock: OnceLock<(HybridClock, u32)>,
    evict_rotor: AtomicUsize,
    /// The shard the next expiry sweep tick starts at.
    sweep_rotor: AtomicUsize,
}

impl std::fmt::Debug for MemoryEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MemoryEngine")
            .field("memory", &self.memory())
            .finish()
    }
}

fn lru_now(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32
}

/// Builds the entry an op produces from the previous one (`None` = the key goes away).
fn build(op: &Op, old: Option<&Entry>, stamp: Option<Stamp>, now: u64) -> Option<Entry> {
    let lru = lru_now(now);
    let live = old.filter(|entry| entry.is_live(now));
    match op {
        Op::Put {
            key,
            value,
            expire_at,
        } => Some(match value {
            Value::String(data) => Entry::new(key, Kind::String, data, *expire_at, stamp, lru),
            Value::Hash(fields) => {
                let payload = encode_hash(fields.iter().map(|(f, v)| (&f[..], &v[..])));
                Entry::new(key, Kind::Hash, &payload, *expire_at, stamp, lru)
            }
        }),
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

/// Exclusive access to one key (its shard is locked) for a command's read-modify-write.
pub struct KeyAccess<'a> {
    engine: &'a MemoryEngine,
    shard: MutexGuard<'a, Shard>,
    hash: u64,
    key: &'a [u8],
    now: u64,
}

impl KeyAccess<'_> {
    /// The time this access reads and writes at (Unix ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The live entry, expiring it lazily; a hit records an access for LRU.
    pub fn get(&mut self) -> Option<&Entry> {
        let expired = match self.shard.table.get(self.hash, self.key) {
            Some(entry) if !entry.is_tombstone() => entry.is_expired(self.now),
            _ => {
                self.shard.misses += 1;
                return None;
            }
        };
        if expired {
            // Every node expires the same keys from the replicated expiry: no tombstone.
            if let Some(old) = self.shard.table.remove(self.hash, self.key) {
                self.shard.expired += 1;
                self.shard.digest_remove(&old);
                self.engine.account(&mut self.shard, Some(&old), None);
            }
            self.shard.misses += 1;
            return None;
        }
        self.shard.hits += 1;
        let lru = lru_now(self.now);
        let entry = self.shard.table.get_mut(self.hash, self.key)?;
        entry.touch(lru);
        Some(entry)
    }

    /// Applies `op` (which must be about this key) through the engine's write path.
    pub fn write(&mut self, op: Op) {
        self.engine
            .write_locked(&mut self.shard, self.hash, &op, None, self.now);
    }
}

impl MemoryEngine {
    /// A new, empty engine.
    pub fn new(config: EngineConfig) -> MemoryEngine {
        let hasher = FixedState::with_seed(0x5e55_10e5_7012_e000);
        let shards = (0..SHARDS)
            .map(|index| {
                Mutex::new(Shard {
                    table: Table::new(),
                    volatile: 0,
                    tombstones: 0,
                    tombstone_bytes: 0,
                    digests: BucketDigests::new(),
                    used: 0,
                    sweep_cursor: 0,
                    random: 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1),
                    expired: 0,
                    evicted: 0,
                    hits: 0,
                    misses: 0,
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let limit = config.limit_bytes;
        MemoryEngine {
            shards,
            hasher,
            used: AtomicI64::new(0),
            tombstone_bytes: AtomicI64::new(0),
            alarm: AtomicBool::new(false),
            limit,
            high: (limit as f64 * config.high_watermark) as u64,
            low: (limit as f64 * config.low_watermark) as u64,
            policy: config.policy,
            sink: OnceLock::new(),
            replication: OnceLock::new(),
            persistence: OnceLock::new(),
            local_clock: OnceLock::new(),
            evict_rotor: AtomicUsize::new(0),
            sweep_rotor: AtomicUsize::new(0),
        }
    }

    /// Installs the op sink; only the first call has an effect (it returns false otherwise).
    pub fn set_sink(&self, sink: Arc<dyn OpSink>) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Installs replication before the node serves (the engine must still be empty of
    /// unstamped entries); only the first call has an effect (it returns false otherwise).
    pub fn set_replication(&self, replication: Replication) -> bool {
        self.replication.set(replication).is_ok()
    }

    /// The installed replication, if any.
    pub fn replication(&self) -> Option<&Replication> {
        self.replication.get()
    }

    /// Installs the write-ahead log (disc mode) after the recovered records were loaded and
    /// before the node serves: from then on every applied write, local or from a peer, is
    /// appended after it is applied. Without replication, local writes are stamped by a local
    /// clock with origin `origin` (the persistent node id), set past `max_hlc` (the greatest
    /// recovered stamp). Only the first call has an effect (it returns false otherwise).
    pub fn set_persistence(
        &self,
        persistence: Arc<Persistence>,
        origin: u32,
        max_hlc: u64,
    ) -> bool {
        let clock = HybridClock::new(system_wall_clock(), MAX_CLOCK_DRIFT_MS);
        clock.observe(max_hlc);
        let _ = self.local_clock.set((clock, origin));
        self.persistence.set(persistence).is_ok()
    }

    /// The installed write-ahead log, if any (disc mode).
    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.persistence.get()
    }

    /// Appends an applied record to the log (disc mode); `local` notes the sequence (or the
    /// failure) for the client's durability wait ([`take_logged`]).
    fn log(&self, record: &RecordView<'_>, local: bool) {
        let Some(persistence) = self.persistence.get() else {
            return;
        };
        let result = persistence.append_view(record);
        if let Err(error) = &result {
            tracing::warn!(%error, "failed to append a record to the write-ahead log");
        }
        if local {
            LOGGED.with(|logged| {
                let (seq, failed) = logged.get();
                match result {
                    Ok(appended) => logged.set((seq.max(appended), failed)),
                    Err(_) => logged.set((seq, true)),
                }
            });
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard_of(hash: u64) -> usize {
        (hash >> (64 - SHARD_BITS)) as usize
    }

    /// Locks the key's shard for a read-modify-write at the current time.
    pub fn key<'a>(&'a self, key: &'a [u8]) -> KeyAccess<'a> {
        self.key_at(key, unix_ms())
    }

    /// Like [`MemoryEngine::key`] at a given time (tests, replay).
    pub fn key_at<'a>(&'a self, key: &'a [u8], now: u64) -> KeyAccess<'a> {
        let hash = self.hash(key);
        KeyAccess {
            engine: self,
            shard: self.shards[Self::shard_of(hash)].lock(),
            hash,
            key,
            now,
        }
    }

    /// Applies an op from elsewhere (replication, log replay) through the same write path.
    pub fn apply(&self, op: &Op, stamp: Option<Stamp>, now: u64) {
        match op.key() {
            Some(key) => {
                let hash = self.hash(key);
                let mut shard = self.shards[Self::shard_of(hash)].lock();
                self.write_locked(&mut shard, hash, op, stamp, now);
            }
            None => self.flush(op, stamp),
        }
    }

    /// The one write path: apply, account, replicate (local writes only), hand to the sink.
    fn write_locked(&self, shard: &mut Shard, hash: u64, op: &Op, stamp: Option<Stamp>, now: u64) {
        let stamp = self.apply_locked(shard, hash, op, stamp, now);
        if let Some(sink) = self.sink.get() {
            sink.record(op, stamp);
        }
    }

    /// Applies `op` to its key; returns the stamp the write carries. A write without a stamp is
    /// local: with replication it is stamped here and its result submitted.
    fn apply_locked(
        &self,
        shard: &mut Shard,
        hash: u64,
        op: &Op,
        stamp: Option<Stamp>,
        now: u64,
    ) -> Option<Stamp> {
        let key = op.key()?;
        let replication = self.replication.get().filter(|_| stamp.is_none());
        if let (
            None,
            None,
            None,
            None,
            Op::SetExpiry {
                expire_at: Some(at),
                ..
            },
        ) = (
            replication,
            stamp,
            self.local_clock.get(),
            self.persistence.get(),
            op,
        ) {
            // Unversioned (one node in RAM): an expiry that replaces one is rewritten in the
            // entry, not by a copy of it. Same size, still volatile: nothing to account.
            let moved = shard
                .table
                .get_mut(hash, key)
                .filter(|entry| entry.is_live(now))
                .is_some_and(|entry| entry.set_expiry_in_place(*at));
            if moved {
                return None;
            }
        }
        let old = shard.table.get(hash, key);
        if let (
            Some(replication),
            Op::SetExpiry {
                expire_at: Some(at),
                ..
            },
        ) = (replication, op)
        {
            // Sliding expiry: a later expiry of the same version is a touch, coalesced and
            // cheap on the wire, instead of a new version carrying the whole value.
            let current = old
                .filter(|entry| entry.is_live(now))
                .and_then(|entry| Some((entry.expire_at()?, entry.stamp()?)));
            if let Some((current, value_stamp)) = current.filter(|(current, _)| at >= current) {
                if *at > current {
                    if let Some(entry) = shard.table.get_mut(hash, key) {
                        entry.set_expiry_in_place(*at);
                    }
                    // Disc mode logs the touched key's whole record with its new expiry (same
                    // stamp: replay merges it like the touch), so a restart keeps the touch.
                    if self.persistence.get().is_some() {
                        if let Some(entry) = shard.table.get(hash, key) {
                            self.log(&entry_view(entry), true);
                        }
                    }
                    replication.submit_touch(Touch {
                        key: key.clone(),
                        value_stamp,
                        expire_at: *at,
                    });
                }
                return Some(value_stamp);
            }
        }
        let logged = self.persistence.get().is_some();
        let stamp = match (replication, self.local_clock.get()) {
            (Some(replication), _) => Some(replication.stamp()),
            (None, Some((clock, origin))) if stamp.is_none() => Some(Stamp {
                hlc: clock.now(),
                origin: *origin,
            }),
            _ => stamp,
        };
        let mut record = None;
        match build(op, old, stamp, now) {
            Some(entry) => {
                if replication.is_some() {
                    record = Some(entry_record(&entry));
                } else if logged {
                    // Disc mode alone: the log encodes the entry itself, without a copy.
                    self.log(&entry_view(&entry), true);
                }
                let cost = entry.clone_header_only();
                let old = shard.insert_digested(hash, entry);
                self.account(shard, old.as_ref(), Some(&cost));
            }
            None => match (old, replication.zip(stamp)) {
                (Some(entry), Some((_, stamp))) if entry.is_live(now) => {
                    // A replicated delete leaves a tombstone so it wins over older versions.
                    let tombstone = Entry::tombstone(key, stamp, now, lru_now(now));
                    record = Some(Record::tombstone(key.clone(), stamp, now));
                    let cost = tombstone.clone_header_only();
                    let old = shard.insert_digested(hash, tombstone);
                    self.account(shard, old.as_ref(), Some(&cost));
                }
                (Some(entry), _) if !entry.is_tombstone() => {
                    // Disc mode without replication keeps no tombstone in memory but logs
                    // one, so replay removes the key.
                    if let (true, Some(stamp)) = (logged, stamp) {
                        record = Some(Record::tombstone(key.clone(), stamp, now));
                    }
                    if let Some(old) = shard.table.remove(hash, key) {
                        shard.digest_remove(&old);
                        self.account(shard, Some(&old), None);
                    }
                }
                _ => {}
            },
        }
        if let Some(record) = record {
            self.log(&record.view(), true);
            if let Some(replication) = replication {
                note_submitted(replication.submit(record));
            }
        }
        stamp
    }

    fn flush(&self, op: &Op, stamp: Option<Stamp>) {
        if stamp.is_none() && (self.replication.get().is_some() || self.persistence.get().is_some())
        {
            // Replicated: one tombstone per live key, so the flush wins over older versions
            // everywhere (and survives anti-entropy).
            let now = unix_ms();
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
                    self.apply_locked(&mut shard, hash, &Op::Delete { key }, None, now);
                }
            }
            if let Some(sink) = self.sink.get() {
                sink.record(op, stamp);
            }
            return;
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.table.clear();
            let used = shard.used;
            shard.used = 0;
            shard.volatile = 0;
            shard.tombstones = 0;
            self.tombstone_bytes
                .fetch_sub(shard.tombstone_bytes, Ordering::Relaxed);
            shard.tombstone_bytes = 0;
            shard.digests = BucketDigests::new();
            self.used.fetch_sub(used, Ordering::Relaxed);
        }
        self.update_alarm();
        if let Some(sink) = self.sink.get() {
            sink.record(op, stamp);
        }
    }

    /// Deletes every key.
    pub fn flush_all(&self) {
        self.flush(&Op::FlushAll, None);
    }

    /// Accounts replacing `old` by `new` (either may be absent). Tombstones are counted apart
    /// from `used` (see [`MemoryStatus::tombstone_bytes`]).
    fn account(&self, shard: &mut Shard, old: Option<&Entry>, new: Option<&CostInfo>) {
        let (mut delta, mut tombstone_delta) = (0, 0);
        if let Some(old) = old {
            if old.expire_at().is_some() {
                shard.volatile -= 1;
            }
            if old.is_tombstone() {
                shard.tombstones -= 1;
                tombstone_delta -= entry_cost(old);
            } else {
                delta -= entry_cost(old);
            }
        }
        if let Some(new) = new {
            if new.volatile {
                shard.volatile += 1;
            }
            if new.tombstone {
                shard.tombstones += 1;
                tombstone_delta += new.cost;
            } else {
                delta += new.cost;
            }
        }
        if tombstone_delta != 0 {
            shard.tombstone_bytes += tombstone_delta;
            self.tombstone_bytes
                .fetch_add(tombstone_delta, Ordering::Relaxed);
        }
        shard.used += delta;
        if delta != 0 {
            self.used.fetch_add(delta, Ordering::Relaxed);
            self.update_alarm();
        }
    }

    fn update_alarm(&self) {
        if self.limit == 0 {
            return;
        }
        let used = self.used_bytes();
        let alarm = self.alarm.load(Ordering::Relaxed);
        if !alarm && used >= self.high {
            if !self.alarm.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    used,
                    high = self.high,
                    limit = self.limit,
                    "memory alarm raised"
                );
            }
        } else if alarm && used < self.low && self.alarm.swap(false, Ordering::Relaxed) {
            tracing::info!(used, low = self.low, "memory alarm cleared");
        }
    }

    /// Estimated bytes in use.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed).max(0) as u64
    }

    /// The memory accounting snapshot.
    pub fn memory(&self) -> MemoryStatus {
        MemoryStatus {
            used_bytes: self.used_bytes(),
            limit_bytes: self.limit,
            high_watermark_bytes: self.high,
            low_watermark_bytes: self.low,
            alarm: self.alarm.load(Ordering::Relaxed),
            policy: self.policy,
            tombstone_bytes: self.tombstone_bytes.load(Ordering::Relaxed).max(0) as u64,
        }
    }

    /// Whether a growth write may proceed: true without an alarm; with one, refuses under
    /// `noeviction`, else evicts (per policy) toward the low watermark, where the alarm clears
    /// (the same hysteresis as `noeviction`), and lets the write proceed once usage is below
    /// the high watermark.
    pub fn make_room(&self) -> bool {
        if !self.alarm.load(Ordering::Relaxed) {
            return true;
        }
        if self.policy == EvictionPolicy::Noeviction {
            return false;
        }
        // Bounded work per write: the way down to the low watermark is spread over several
        // writes. Tombstones left by evictions are outside `used_bytes`, so every eviction
        // makes progress.
        for _ in 0..256 {
            if !self.alarm.load(Ordering::Relaxed) || !self.evict_one() {
                break;
            }
        }
        self.used_bytes() < self.high
    }

    fn evict_one(&self) -> bool {
        let now = unix_ms();
        for _ in 0..SHARDS {
            let index = self.evict_rotor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut shard = self.shards[index].lock();
            if shard.volatile == 0 {
                continue;
            }
            let mut cursor = shard.next_random();
            let mut best: Option<(u64, Vec<u8>)> = None;
            let mut seen = 0;
            for _ in 0..128 {
                cursor = shard.table.scan(cursor, |entry| {
                    let Some(at) = entry.expire_at() else {
                        return;
                    };
                    seen += 1;
                    let score = match self.policy {
                        EvictionPolicy::VolatileLru => u64::from(entry.lru()),
                        _ => at,
                    };
                    if best.as_ref().is_none_or(|(current, _)| score < *current) {
                        best = Some((score, entry.key().to_vec()));
                    }
                });
                if seen >= EVICTION_SAMPLES {
                    break;
                }
            }
            if let Some((_, key)) = best {
                let hash = self.hash(&key);
                let expired = match shard.table.get(hash, &key) {
                    Some(entry) => entry.is_expired(now),
                    None => continue,
                };
                if expired {
                    // Every node expires it from the replicated expiry: no tombstone.
                    if let Some(old) = shard.table.remove(hash, &key) {
                        shard.digest_remove(&old);
                        shard.expired += 1;
                        self.account(&mut shard, Some(&old), None);
                    }
                    return true;
                }
                // An eviction is a delete through the one write path: with replication it
                // leaves a tombstone that replicates (else anti-entropy would bring the key back
                // from a peer), in disc mode it is logged. The client whose write made room does
                // not wait for it (`--write-ack`, fsync): the thread's notes are restored.
                let submitted = SUBMITTED.with(Cell::get);
                let logged = LOGGED.with(Cell::get);
                shard.evicted += 1;
                tracing::debug!(key = %String::from_utf8_lossy(&key), "evicted");
                self.write_locked(
                    &mut shard,
                    hash,
                    &Op::Delete {
                        key: Bytes::from(key),
                    },
                    None,
                    now,
                );
                SUBMITTED.with(|cell| cell.set(submitted));
                LOGGED.with(|cell| cell.set(logged));
                return true;
            }
        }
        false
    }

    /// One active-expiry tick: visits shards holding keys with a TTL, in rotation, at most
    /// `buckets_per_shard` buckets each, and removes the expired keys it finds. Like Redis's
    /// active expire cycle it leaves a shard early once it has checked [`SWEEP_SAMPLE`] keys
    /// with a TTL and fewer than 1 in [`SWEEP_STALE_RATIO`] had expired, and the tick ends
    /// after [`SWEEP_QUIET_SHARDS`] such quiet visits: a table of live sessions costs a few
    /// dozen key checks per tick (each a cache miss or three), while shards where many keys
    /// expire are all visited, every tick, until they are clean. Walking every bucket on every
    /// tick cost a tenth of the CPU of a SET EX benchmark; sampling every shard on every tick
    /// still cost a sixth of what the lookups of the commands did. Returns how many it removed.
    pub fn sweep_expired(&self, buckets_per_shard: usize) -> u64 {
        let now = unix_ms();
        let mut total = 0;
        let mut quiet_visits = 0;
        let start = self.sweep_rotor.load(Ordering::Relaxed);
        for offset in 0..SHARDS {
            if quiet_visits >= SWEEP_QUIET_SHARDS {
                self.sweep_rotor
                    .store((start + offset) % SHARDS, Ordering::Relaxed);
                break;
            }
            let mut shard = self.shards[(start + offset) % SHARDS].lock();
            if shard.volatile == 0 {
                continue;
            }
            let mut cursor = shard.sweep_cursor;
            let (mut removed_count, mut removed_cost) = (0u64, 0i64);
            let mut checked = 0u64;
            let Shard { table, digests, .. } = &mut *shard;
            for _ in 0..buckets_per_shard {
                cursor = table.retain_bucket(
                    cursor,
                    |entry| {
                        checked += u64::from(entry.expire_at().is_some());
                        entry.is_expired(now)
                    },
                    |old| {
                        removed_count += 1;
                        removed_cost += entry_cost(&old);
                        if let Some(stamp) = old.stamp() {
                            digests.remove(old.key(), stamp);
                        }
                    },
                );
                if checked >= SWEEP_SAMPLE && removed_count * SWEEP_STALE_RATIO < checked {
                    quiet_visits += 1;
                    break;
                }
                if cursor == 0 {
                    break;
                }
            }
            shard.sweep_cursor = cursor;
            if removed_count > 0 {
                shard.expired += removed_count;
                shard.volatile -= removed_count;
                shard.used -= removed_cost;
                self.used.fetch_sub(removed_cost, Ordering::Relaxed);
                total += removed_count;
            }
        }
        if total > 0 {
            self.update_alarm();
        }
        total
    }

    /// Counters summed over all shards.
    pub fn stats(&self) -> StoreStats {
        let mut stats = StoreStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            stats.keys += shard.table.len() as u64 - shard.tombstones;
            stats.volatile_keys += shard.volatile;
            stats.expired += shard.expired;
            stats.evicted += shard.evicted;
            stats.hits += shard.hits;
            stats.misses += shard.misses;
        }
        stats
    }

    /// Number of keys (including expired keys not yet reaped, as Redis's DBSIZE).
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock();
                shard.table.len() as u64 - shard.tombstones
            })
            .sum()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One SCAN step. The cursor packs the shard in its low bits and that shard's
    /// reverse-binary bucket cursor above them; it stays below 2^53 for any table size this
    /// process can hold. `visit` sees each live entry of the visited buckets.
    pub fn scan(&self, cursor: u64, count: usize, visit: impl FnMut(&Entry)) -> u64 {
        self.scan_entries(cursor, count, false, visit)
    }

    /// [`MemoryEngine::scan`] over every stored entry when `raw` (tombstones and expired
    /// entries included: replication snapshots), else over live entries only.
    fn scan_entries(
        &self,
        cursor: u64,
        count: usize,
        raw: bool,
        mut visit: impl FnMut(&Entry),
    ) -> u64 {
        let now = unix_ms();
        let mut shard_index = (cursor as usize) & (SHARDS - 1);
        let mut bucket_cursor = cursor >> SHARD_BITS;
        let mut visited = 0usize;
        let mut emitted = 0usize;
        // COUNT is a hint; also bound the work on sparse tables.
        let budget = count.max(1).saturating_mul(10);
        loop {
            let shard = self.shards[shard_index].lock();
            loop {
                bucket_cursor = shard.table.scan(bucket_cursor, |entry| {
                    if raw || entry.is_live(now) {
                        emitted += 1;
                        visit(entry);
                    }
                });
                visited += 1;
                if bucket_cursor == 0 || emitted >= count || visited >= budget {
                    break;
                }
            }
            drop(shard);
            if bucket_cursor == 0 {
                shard_index += 1;
                if shard_index == SHARDS {
                    return 0;
                }
            }
            if emitted >= count || visited >= budget {
                return (bucket_cursor << SHARD_BITS) | shard_index as u64;
            }
        }
    }

    /// Visits every live entry (KEYS).
    pub fn for_each(&self, mut visit: impl FnMut(&Entry)) {
        let now = unix_ms();
        for shard in self.shards.iter() {
            shard.lock().table.for_each(|entry| {
                if entry.is_live(now) {
                    visit(entry);
                }
            });
        }
    }

    /// RENAME/RENAMENX: moves `from` to `to` (with its value and expiry) as two ops, a delete
    /// and a put, under both shard locks. Returns `None` when `from` does not exist, `Some(false)`
    /// when `only_if_absent` and `to` exists, `Some(true)` when renamed.
    pub fn rename(&self, from: &Bytes, to: &Bytes, only_if_absent: bool) -> Option<bool> {
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
        let source = first
            .table
            .get(from_hash, from)
            .filter(|entry| entry.is_live(now))?;
        let value = match source.kind() {
            Kind::String => Value::String(Bytes::copy_from_slice(source.payload())),
            Kind::Hash => Value::Hash(source.hash_pairs()),
        };
        let expire_at = source.expire_at();
        if from == to {
            return Some(!only_if_absent);
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
            return Some(false);
        }
        self.write_locked(
            target_shard,
            to_hash,
            &Op::Put {
                key: to.clone(),
                value,
                expire_at,
            },
            None,
            now,
        );
        self.write_locked(
            &mut first,
            from_hash,
            &Op::Delete { key: from.clone() },
            None,
            now,
        );
        Some(true)
    }
}

/// What the accounting needs to know about a new entry, taken before the entry moves into the
/// table.
struct CostInfo {
    cost: i64,
    volatile: bool,
    tombstone: bool,
}

impl Entry {
    fn clone_header_only(&self) -> CostInfo {
        CostInfo {
            cost: entry_cost(self),
            volatile: self.expire_at().is_some(),
            tombstone: self.is_tombstone(),
        }
    }
}

/// The replicated state of a stored entry (an unstamped entry has the smallest stamp),
/// borrowed from it.
fn entry_view(entry: &Entry) -> RecordView<'_> {
    let state = match entry.deleted_at() {
        Some(deleted_at_ms) => StateView::Tombstone { deleted_at_ms },
        None => StateView::Live {
            value: match entry.kind() {
                Kind::String => ValueView::String(entry.payload()),
                Kind::Hash => ValueView::StoredHash(entry.hash_fields()),
            },
            expire_at: entry.expire_at(),
        },
    };
    RecordView {
        key: entry.key(),
        stamp: entry.stamp().unwrap_or(Stamp { hlc: 0, origin: 0 }),
        state,
    }
}

/// [`entry_view`], copied.
fn entry_record(entry: &Entry) -> Record {
    entry_view(entry).to_record()
}

/// The entry storing a record.
fn record_entry(record: &Record, lru: u32) -> Entry {
    match &record.state {
        RecordState::Tombstone { deleted_at_ms } => {
            Entry::tombstone(&record.key, record.stamp, *deleted_at_ms, lru)
        }
        RecordState::Live { value, expire_at } => match value {
            Value::String(data) => Entry::new(
                &record.key,
                Kind::String,
                data,
                *expire_at,
                Some(record.stamp),
                lru,
            ),
            Value::Hash(fields) => {
                let payload = encode_hash(fields.iter().map(|(f, v)| (&f[..], &v[..])));
                Entry::new(
                    &record.key,
                    Kind::Hash,
                    &payload,
                    *expire_at,
                    Some(record.stamp),
                    lru,
                )
            }
        },
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
        loaded: &(dyn Fn(u64) + Sync),
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
    /// accounting and digests; returns the merged record if the store changed.
    fn merge_locked(
        &self,
        shard: &mut Shard,
        hash: u64,
        record: &Record,
        now_ms: u64,
        forget_before_ms: u64,
    ) -> Option<Record> {
        let stored = shard.table.get(hash, &record.key);
        if stored
            .and_then(Entry::stamp)
            .is_some_and(|stamp| stamp > record.stamp)
        {
            return None;
        }
        let stored = stored.map(entry_record);
        let merged = replica::merge(stored.as_ref(), record, now_ms, forget_before_ms)?;
        let entry = record_entry(&merged, lru_now(now_ms));
        let cost = entry.clone_header_only();
        let old = shard.insert_digested(hash, entry);
        self.account(shard, old.as_ref(), Some(&cost));
        Some(merged)
    }

    fn shard_for(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.hash(key);
        (hash, self.shards[Self::shard_of(hash)].lock())
    }
}

/// Replication's view of the engine. Remote records and touches are applied here, under the
/// key's shard lock, with memory accounting and digests, and are never submitted back.
impl Replica for MemoryEngine {
    fn apply(&self, record: &Record, now_ms: u64, forget_before_ms: u64) -> bool {
        // Back-pressure from the write-ahead log before the shard lock, never under it.
        if let Some(persistence) = self.persistence.get() {
            persistence.wait_for_room();
        }
        let (hash, mut shard) = self.shard_for(&record.key);
        let Some(merged) = self.merge_locked(&mut shard, hash, record, now_ms, forget_before_ms)
        else {
            return false;
        };
        self.log(&merged.view(), false);
        true
    }

    fn apply_touch(&self, touch: &Touch) -> bool {
        if let Some(persistence) = self.persistence.get() {
            persistence.wait_for_room();
        }
        let (hash, mut shard) = self.shard_for(&touch.key);
        let Some(entry) = shard.table.get_mut(hash, &touch.key) else {
            return false;
        };
        if entry.is_tombstone() || entry.stamp() != Some(touch.value_stamp) {
            return false;
        }
        let touched = match entry.expire_at() {
            Some(at) if at < touch.expire_at => entry.set_expiry_in_place(touch.expire_at),
            _ => false,
        };
        if touched && self.persistence.get().is_some() {
            self.log(&entry_view(entry), false);
        }
        touched
    }

    fn snapshot_chunk(
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

    fn visit_snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
        visit: &mut dyn FnMut(&RecordView<'_>),
    ) -> Option<Vec<u8>> {
        let cursor = after
            .and_then(|after| <[u8; 8]>::try_from(after).ok())
            .map_or(0, u64::from_le_bytes);
        let next = self.scan_entries(cursor, max_records.max(1), true, |entry| {
            visit(&entry_view(entry));
        });
        (next != 0).then(|| next.to_le_bytes().to_vec())
    }

    fn bucket_digests(&self) -> Vec<u64> {
        let mut sums = vec![0u64; BUCKETS];
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (sum, shard_sum) in sums.iter_mut().zip(shard.digests.sums()) {
                *sum = sum.wrapping_add(*shard_sum);
            }
        }
        sums
    }

    fn bucket_keys(&self, buckets: &[usize]) -> Vec<Vec<(Bytes, Stamp)>> {
        let positions = BucketPositions::new(buckets);
        let mut lists = vec![Vec::new(); buckets.len()];
        if buckets.is_empty() {
            return lists;
        }
        for shard in self.shards.iter() {
            shard.lock().table.for_each(|entry| {
                if let Some(stamp) = entry.stamp() {
                    if let Some(position) = positions.of(entry.key()) {
                        lists[position].push((Bytes::copy_from_slice(entry.key()), stamp));
                    }
                }
            });
        }
        lists
    }

    fn read_records(&self, keys: &[Bytes]) -> Vec<Record> {
        keys.iter()
            .filter_map(|key| {
                let (hash, shard) = self.shard_for(key);
                shard.table.get(hash, key).map(entry_record)
            })
            .collect()
    }

    fn collect_tombstones(&self, deleted_before_ms: u64) -> usize {
        let mut collected = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            if shard.tombstones == 0 {
                continue;
            }
            let mut doomed = Vec::new();
            shard.table.for_each(|entry| {
                if entry
                    .deleted_at()
                    .is_some_and(|deleted_at| deleted_at < deleted_before_ms)
                {
                    doomed.push(Bytes::copy_from_slice(entry.key()));
                }
            });
            for key in doomed {
                let hash = self.hash(&key);
                if let Some(old) = shard.table.remove(hash, &key) {
                    shard.digest_remove(&old);
                    self.account(&mut shard, Some(&old), None);
                    collected += 1;
                }
            }
        }
        collected
    }

    fn is_empty(&self) -> bool {
        self.shards
            .iter()
            .all(|shard| shard.lock().table.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::op::RecordingSink;

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

    fn put(key: &str, value: &str, expire_at: Option<u64>) -> Op {
        Op::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Value::String(Bytes::copy_from_slice(value.as_bytes())),
            expire_at,
        }
    }

    #[test]
    fn write_path_applies_and_records() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let sink = RecordingSink::new();
        assert!(engine.set_sink(sink.clone()));
        let now = unix_ms();
        engine.apply(&put("a", "1", None), None, now);
        engine.apply(&put("b", "2", Some(now + 60_000)), None, now);
        engine.apply(
            &Op::HashSet {
                key: Bytes::from_static(b"h"),
                fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
            },
            None,
            now,
        );
        assert_eq!(engine.len(), 3);
        assert_eq!(engine.stats().volatile_keys, 1);
        {
            let mut access = engine.key(b"a");
            assert_eq!(
                access.get().map(|entry| entry.payload().to_vec()),
                Some(b"1".to_vec())
            );
        }
        engine.apply(
            &Op::Delete {
                key: Bytes::from_static(b"a"),
            },
            None,
            now,
        );
        assert_eq!(engine.len(), 2);
        assert_eq!(sink.ops().len(), 4);
        assert_eq!(sink.ops()[0], put("a", "1", None));
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
            first.apply(op, None, now);
            second.apply(op, None, now);
        }
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_eq!(first.used_bytes(), second.used_bytes());
        let mut access = first.key_at(b"k", now);
        assert_eq!(access.get().and_then(|entry| entry.expire_at()), None);
    }

    #[test]
    fn lazy_and_active_expiry() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        for index in 0..1000 {
            engine.apply(&put(&format!("k{index}"), "v", Some(now - 1)), None, now);
        }
        engine.apply(&put("live", "v", Some(now + 60_000)), None, now);
        assert_eq!(engine.len(), 1001);
        assert!(engine.key(b"k1").get().is_none());
        assert_eq!(engine.stats().expired, 1);
        let mut removed = 0;
        for _ in 0..100 {
            removed += engine.sweep_expired(16);
        }
        assert_eq!(removed, 999);
        assert_eq!(engine.len(), 1);
        assert_eq!(engine.stats().expired, 1000);
        let used = engine.used_bytes() as i64;
        let mut access = engine.key(b"live");
        let expected = access.get().map(entry_cost);
        assert_eq!(Some(used), expected);
    }

    #[test]
    fn sweep_stops_early_among_live_keys_but_reaches_every_expired_one() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        for index in 0..20_000 {
            let expire_at = if index % 100 == 0 {
                now - 1
            } else {
                now + 60_000
            };
            engine.apply(&put(&format!("k{index}"), "v", Some(expire_at)), None, now);
        }
        // 1% expired: a tick checks about 20 keys per shard instead of 256 buckets of it.
        let mut ticks = 0;
        let mut removed = 0;
        while removed < 200 && ticks < 10_000 {
            removed += engine.sweep_expired(256);
            ticks += 1;
        }
        assert_eq!(removed, 200);
        assert_eq!(engine.len(), 19_800);
        // A full pass at 256 buckets per shard takes 2 ticks; sampling every shard about 20
        // keys a tick takes about 16; sampling 4 quiet shards a tick takes about 250.
        assert!(ticks > 100, "{ticks} ticks");
    }

    #[test]
    fn a_new_expiry_of_an_unversioned_key_is_rewritten_in_place() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        engine.apply(&put("s", "data", Some(now + 1_000)), None, now);
        let used = engine.used_bytes();
        let expire = |at| Op::SetExpiry {
            key: Bytes::from_static(b"s"),
            expire_at: at,
        };
        engine.key_at(b"s", now).write(expire(Some(now + 60_000)));
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
        engine.key_at(b"s", now).write(expire(None));
        assert_eq!(engine.stats().volatile_keys, 0);
        assert_eq!(
            engine.key_at(b"s", now).get().and_then(Entry::expire_at),
            None
        );
    }

    #[test]
    fn sweep_visits_every_shard_while_many_keys_expire() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        for index in 0..20_000 {
            engine.apply(&put(&format!("k{index}"), "v", Some(now + 50)), None, now);
        }
        engine.apply(&put("live", "v", Some(now + 60_000)), None, now);
        std::thread::sleep(std::time::Duration::from_millis(60));
        // About 312 keys in 512 buckets per shard: two ticks of 256 buckets each.
        let mut ticks = 0;
        let mut removed = 0;
        while removed < 20_000 && ticks < 100 {
            removed += engine.sweep_expired(256);
            ticks += 1;
        }
        assert_eq!(removed, 20_000);
        assert!(ticks <= 3, "{ticks} ticks");
        assert_eq!(engine.len(), 1);
    }

    #[test]
    fn alarm_with_hysteresis_and_eviction() {
        let config = EngineConfig {
            limit_bytes: 100_000,
            high_watermark: 0.8,
            low_watermark: 0.5,
            policy: EvictionPolicy::Noeviction,
        };
        let engine = MemoryEngine::new(config);
        let now = unix_ms();
        let mut index = 0;
        while engine.make_room() {
            engine.apply(
                &put(&format!("k{index}"), &"x".repeat(100), None),
                None,
                now,
            );
            index += 1;
        }
        assert!(engine.memory().alarm);
        assert!(engine.used_bytes() >= 80_000);
        // Below high but above low: still refused (hysteresis).
        let mut removed = 0;
        while engine.used_bytes() >= 75_000 {
            engine.apply(
                &Op::Delete {
                    key: Bytes::from(format!("k{removed}")),
                },
                None,
                now,
            );
            removed += 1;
        }
        assert!(!engine.make_room());
        while engine.used_bytes() >= 50_000 {
            engine.apply(
                &Op::Delete {
                    key: Bytes::from(format!("k{removed}")),
                },
                None,
                now,
            );
            removed += 1;
        }
        assert!(!engine.memory().alarm);
        assert!(engine.make_room());

        let engine = MemoryEngine::new(EngineConfig {
            policy: EvictionPolicy::VolatileTtl,
            ..config
        });
        for index in 0..2000 {
            assert!(engine.make_room(), "eviction should make room at {index}");
            engine.apply(
                &put(
                    &format!("k{index}"),
                    &"x".repeat(100),
                    Some(now + 60_000 + index),
                ),
                None,
                now,
            );
        }
        assert!(engine.stats().evicted > 0);
        assert!(engine.used_bytes() < 82_000);
    }

    /// An eviction with replication installed is a replicated delete: it leaves a tombstone,
    /// submits it, and the tombstone costs nothing against the limit, so evicting keys as small
    /// as their tombstones still makes progress and the alarm clears at the low watermark.
    #[tokio::test]
    async fn eviction_replicates_a_tombstone_outside_the_budget() {
        use crate::replication::{
            generate_node_id, InMemoryNetwork, RecordState, ReplicationConfig, StaticPeers,
        };
        let engine = Arc::new(MemoryEngine::new(EngineConfig {
            limit_bytes: 100_000,
            high_watermark: 0.8,
            low_watermark: 0.5,
            policy: EvictionPolicy::VolatileTtl,
        }));
        let network = InMemoryNetwork::new();
        let replica: Arc<dyn Replica> = engine.clone();
        let replication = Replication::start(
            ReplicationConfig::new("test", "node-0", generate_node_id(), "node-0:7379"),
            replica,
            Arc::new(network.transport("node-0:7379")),
            Arc::new(StaticPeers(Default::default())),
        )
        .await
        .expect("replication starts");
        assert!(engine.set_replication(replication.clone()));
        let now = unix_ms();
        // A one-byte value costs as much as the tombstone that replaces it when evicted.
        let (mut raised, mut cleared, mut alarm) = (0, 0, false);
        for index in 0..5000u64 {
            assert!(engine.make_room(), "no room at {index}");
            let was = alarm;
            alarm = engine.memory().alarm;
            if alarm != was {
                assert!(alarm || engine.used_bytes() < 50_000);
                *(if alarm { &mut raised } else { &mut cleared }) += 1;
            }
            engine.apply(
                &put(&format!("k{index}"), "x", Some(now + 60_000 + index)),
                None,
                now,
            );
        }
        let stats = engine.stats();
        let memory = engine.memory();
        // Raised at the high watermark, cleared at the low one by eviction, more than once.
        assert!(
            raised >= 2 && cleared >= 2,
            "raised {raised}, cleared {cleared}"
        );
        assert!(stats.evicted > 3000, "evicted {}", stats.evicted);
        assert_eq!(stats.keys, 5000 - stats.evicted);
        assert!(memory.used_bytes < 80_000, "used {}", memory.used_bytes);
        assert!(
            memory.tombstone_bytes > 100_000,
            "tombstones {}",
            memory.tombstone_bytes
        );
        // Every write and every eviction went to replication, nothing else.
        assert_eq!(replication.head(), 5000 + stats.evicted);
        // Each evicted key is a tombstone, absent to reads.
        let evicted: Vec<Bytes> = (0..5000)
            .map(|index| Bytes::from(format!("k{index}")))
            .filter(|key| engine.key(key).get().is_none())
            .collect();
        assert_eq!(evicted.len() as u64, stats.evicted);
        let records = engine.read_records(&evicted);
        assert_eq!(records.len(), evicted.len());
        assert!(records
            .iter()
            .all(|record| matches!(record.state, RecordState::Tombstone { .. })));
        replication.shutdown();
    }

    /// One call lists several buckets in one pass: each list holds exactly the stamped
    /// versions (tombstones included) of its bucket, in the order the buckets were asked.
    #[test]
    fn bucket_keys_lists_the_asked_buckets_in_one_call() {
        use crate::replication::record::bucket_of;
        let engine = MemoryEngine::new(EngineConfig::default());
        let stamp = |hlc| Stamp { hlc, origin: 7 };
        let mut expected: Vec<Vec<(Bytes, Stamp)>> = vec![Vec::new(); BUCKETS];
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
            assert!(Replica::apply(&engine, &record, 2, 0));
            expected[bucket_of(&key)].push((key, stamp(index + 1)));
        }
        // An unstamped (never replicated) entry is in no bucket.
        engine.apply(&put("local", "v", None), None, unix_ms());
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
        assert_eq!(engine.bucket_keys(&[]), Vec::<Vec<(Bytes, Stamp)>>::new());
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
            if Replica::apply(&applied, record, now, forget_before) {
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

    #[test]
    fn rename_moves_value_and_ttl() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        engine.apply(&put("a", "1", Some(now + 10_000)), None, now);
        engine.apply(&put("b", "2", None), None, now);
        assert_eq!(
            engine.rename(&Bytes::from_static(b"a"), &Bytes::from_static(b"b"), true),
            Some(false)
        );
        assert_eq!(
            engine.rename(&Bytes::from_static(b"a"), &Bytes::from_static(b"c"), false),
            Some(true)
        );
        assert_eq!(
            engine.rename(&Bytes::from_static(b"zz"), &Bytes::from_static(b"c"), false),
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

    #[test]
    fn scan_cursor_covers_all_shards() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        for index in 0..500 {
            engine.apply(&put(&format!("k{index}"), "v", None), None, now);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = engine.scan(cursor, 10, |entry| {
                seen.insert(entry.key().to_vec());
            });
            assert!(cursor < (1 << 53));
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 500);
    }
}
