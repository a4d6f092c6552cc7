//! [`MemoryEngine`]: the keyspace in sharded chained tables. Each concern of the engine has
//! its own file: [`write`] (the one write path), [`accounting`] (memory, watermarks,
//! eviction), [`expiry`] (the active expiry sweep), [`scan`] (SCAN, KEYS), [`replica`] (merging
//! records from elsewhere, snapshots, digests, tombstones).
//!
//! With a [`WriteHook`] installed that asks for versions ([`Versioning`]), every local write is
//! stamped and what it changed handed to the hook; in [`Versioning::Replicated`] deletions
//! are kept (a key showing nothing is absent to every read) and per-bucket digests are kept up
//! to date. Records from elsewhere are merged by [`crate::store::record::merge`] and never
//! handed back as local writes. Without a hook entries carry no stamp and the write path is the
//! single-node one.

mod accounting;
mod expiry;
#[cfg(test)]
mod hook_events;
mod keys;
mod replica;
mod scan;
mod watch;
mod write;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::{Arc, OnceLock};

use foldhash::fast::FixedState;
use parking_lot::{Mutex, MutexGuard};

pub use accounting::{
    entry_cost, memory_reserve, EngineConfig, EvictionPolicy, MemoryStatus, VALUE_COST_FACTOR,
};
pub use keys::KeysAccess;
pub use replica::BulkLoad;
pub use watch::Watch;

use super::digest::{key_hash, BucketDigests};
use super::entry::Entry;
use super::hook::{Versioning, WriteHook, WriteReceipt};
use super::op::Op;
use super::table::{Position, Table};
use super::unix_ms;

/// Shard count (a power of two); the top bits of a key's hash pick the shard.
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

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
    /// Key tombstones kept for replication (deleted or evicted keys, until collected).
    pub tombstones: u64,
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
    /// `WATCH`ed keys of this shard and their watchers.
    watched: watch::Watchers,
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
        if let Some(version) = entry.version() {
            self.digests.remove(entry.key(), version);
        }
    }

    /// Inserts `entry` in place of the stored version of its key (returned), keeping the
    /// digests with one hash of the key for both versions.
    fn insert_digested(&mut self, hash: u64, entry: Entry) -> Option<Entry> {
        let position = self.table.position(hash, entry.key());
        self.insert_digested_at(hash, position, entry)
    }

    /// [`Shard::insert_digested`] with the key's place in the table already found.
    fn insert_digested_at(
        &mut self,
        hash: u64,
        position: Option<Position>,
        entry: Entry,
    ) -> Option<Entry> {
        let new = entry.version();
        let digest_hash = new.map(|_| key_hash(entry.key()));
        let old = self.table.insert_at(hash, position, entry);
        let previous = old.as_ref().and_then(Entry::version);
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
    /// The limit without the reserve ([`accounting::memory_reserve`]); 0 without a limit.
    effective: u64,
    policy: EvictionPolicy,
    /// The sampled process footprint and what was accounted since (used memory).
    footprint: accounting::Footprint,
    hook: OnceLock<Arc<dyn WriteHook>>,
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

/// Exclusive access to one key (its shard is locked) for a command's read-modify-write.
pub struct KeyAccess<'a> {
    engine: &'a MemoryEngine,
    shard: MutexGuard<'a, Shard>,
    hash: u64,
    key: &'a [u8],
    now: u64,
    /// Where the key sat at the last [`KeyAccess::get`] (`Some(None)`: absent), so the write
    /// that follows does not search the chain again; taken by every write, which may move it.
    known: Option<Option<Position>>,
}

impl KeyAccess<'_> {
    /// The time this access reads and writes at (Unix ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The live entry, expiring it lazily; a hit records an access for LRU.
    pub fn get(&mut self) -> Option<&Entry> {
        let (position, live) =
            self.engine
                .find_live(&mut self.shard, self.hash, self.key, self.now);
        self.known = Some(position);
        live.then_some(position)
            .flatten()
            .and_then(|position| self.shard.table.at(position))
    }

    /// The live entry without recording an access (OBJECT IDLETIME must not reset what it
    /// reports).
    pub fn peek(&self) -> Option<&Entry> {
        self.shard
            .table
            .get(self.hash, self.key)
            .filter(|entry| entry.is_live(self.now))
    }

    /// Applies `op` (which must be about this key) through the engine's write path; the
    /// receipt says what the client must wait for.
    pub fn write(&mut self, op: Op) -> WriteReceipt {
        let known = self.known.take();
        self.engine
            .write_known(&mut self.shard, self.hash, known, &op, self.now)
    }
}

impl MemoryEngine {
    /// The live entry of a key in its locked shard, expiring it lazily; a hit records an
    /// access for LRU.
    fn get_locked<'s>(
        &self,
        shard: &'s mut Shard,
        hash: u64,
        key: &[u8],
        now: u64,
    ) -> Option<&'s Entry> {
        match self.find_live(shard, hash, key, now) {
            (Some(position), true) => shard.table.at(position),
            _ => None,
        }
    }

    /// Where the key sits in its locked shard's table (`None`: absent, or expired just now and
    /// removed) and whether it is live; expires it lazily, counts the hit or miss, and records
    /// a hit's access for LRU. One search of the chain.
    fn find_live(
        &self,
        shard: &mut Shard,
        hash: u64,
        key: &[u8],
        now: u64,
    ) -> (Option<Position>, bool) {
        let Some(position) = shard.table.position(hash, key) else {
            shard.misses += 1;
            return (None, false);
        };
        let expired = match shard.table.at(position) {
            Some(entry) if !entry.is_tombstone() => entry.is_expired(now),
            _ => {
                shard.misses += 1;
                return (Some(position), false);
            }
        };
        if expired {
            // Every node expires the same keys from the replicated expiry: no tombstone.
            if let Some(old) = shard.table.remove(hash, key) {
                shard.expired += 1;
                shard.digest_remove(&old);
                self.account(shard, Some(&old), None);
                self.touch_watched(shard, key);
                if let Some(hook) = self.hook() {
                    hook.expired(key);
                }
            }
            shard.misses += 1;
            return (None, false);
        }
        shard.hits += 1;
        if let Some(entry) = shard.table.at_mut(position) {
            entry.touch(lru_now(now));
        }
        (Some(position), true)
    }

    /// A new, empty engine.
    pub fn new(config: EngineConfig) -> MemoryEngine {
        // Seeded at random per process: with a known seed, clients could choose keys that all
        // land in one bucket (hash flooding). Digests use their own fixed hash (digest.rs).
        let hasher = FixedState::with_seed(std::hash::BuildHasher::hash_one(
            &std::hash::RandomState::new(),
            0u8,
        ));
        let shards = (0..SHARDS)
            .map(|index| {
                Mutex::new(Shard {
                    table: Table::new(),
                    volatile: 0,
                    tombstones: 0,
                    tombstone_bytes: 0,
                    digests: BucketDigests::new(),
                    watched: watch::Watchers::default(),
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
        let effective = limit - memory_reserve(limit);
        MemoryEngine {
            shards,
            hasher,
            used: AtomicI64::new(0),
            tombstone_bytes: AtomicI64::new(0),
            alarm: AtomicBool::new(false),
            limit,
            high: (effective as f64 * config.high_watermark) as u64,
            low: (effective as f64 * config.low_watermark) as u64,
            effective,
            policy: config.policy,
            footprint: accounting::Footprint::default(),
            hook: OnceLock::new(),
            evict_rotor: AtomicUsize::new(0),
            sweep_rotor: AtomicUsize::new(0),
        }
    }

    /// Installs the write hook before the node serves (the engine must still be empty of
    /// unstamped entries when the hook versions writes); only the first call has an effect (it
    /// returns false otherwise).
    pub fn set_hook(&self, hook: Arc<dyn WriteHook>) -> bool {
        self.hook.set(hook).is_ok()
    }

    /// The installed hook, if any.
    fn hook(&self) -> Option<&dyn WriteHook> {
        self.hook.get().map(|hook| &**hook)
    }

    /// How writes are versioned (by the installed hook).
    pub fn versioning(&self) -> Versioning {
        self.hook()
            .map_or(Versioning::Unversioned, WriteHook::versioning)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard_of(hash: u64) -> usize {
        (hash >> (64 - SHARD_BITS)) as usize
    }

    fn shard_for(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.hash(key);
        (hash, self.shards[Self::shard_of(hash)].lock())
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
            known: None,
        }
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
            stats.tombstones += shard.tombstones;
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
}

/// Test helpers shared by the engine's files.
#[cfg(test)]
pub(super) mod testing {
    use bytes::Bytes;

    use crate::store::op::Op;
    use crate::store::value::Value;

    /// A string `SET` op.
    pub fn put(key: &str, value: &str, expire_at: Option<u64>) -> Op {
        Op::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Value::String(Bytes::copy_from_slice(value.as_bytes())),
            expire_at,
            keep_ttl: false,
        }
    }
}
