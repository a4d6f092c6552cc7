//! Memory accounting: the estimated cost of every stored entry, the high/low watermark alarm
//! with its hysteresis, and sampled eviction when a growth write meets the alarm.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{unix_ms, MemoryEngine, Shard, SHARDS};
use crate::store::entry::Entry;
use crate::store::op::Op;

/// Keys sampled per eviction (Redis `maxmemory-samples`).
const EVICTION_SAMPLES: usize = 5;

/// What happens to growth writes above the high memory watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// Refuse them with Redis's OOM error.
    Noeviction,
    /// Evict keys with a TTL, nearest expiry first (sampled).
    VolatileTtl,
    /// Evict keys with a TTL, least recently used first (sampled).
    VolatileLru,
}

impl EvictionPolicy {
    /// Every policy, in the order `--help` lists them.
    pub const ALL: [EvictionPolicy; 3] = [
        EvictionPolicy::Noeviction,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::VolatileLru,
    ];

    /// The name Redis uses for this policy (`maxmemory-policy`).
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "noeviction",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
            EvictionPolicy::VolatileLru => "volatile-lru",
        }
    }

    /// The policy Redis names `name`.
    pub fn from_name(name: &str) -> Option<EvictionPolicy> {
        EvictionPolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == name)
    }
}

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

/// What the accounting needs to know about a new entry, taken before the entry moves into the
/// table.
pub(super) struct CostInfo {
    cost: i64,
    volatile: bool,
    tombstone: bool,
}

impl Entry {
    pub(super) fn cost_info(&self) -> CostInfo {
        CostInfo {
            cost: entry_cost(self),
            // A key showing nothing may keep its expiry register; it is no volatile key.
            volatile: self.expire_at().is_some() && !self.is_tombstone(),
            tombstone: self.is_tombstone(),
        }
    }
}

impl MemoryEngine {
    /// Accounts replacing `old` by `new` (either may be absent). Tombstones are counted apart
    /// from `used` (see [`MemoryStatus::tombstone_bytes`]).
    pub(super) fn account(&self, shard: &mut Shard, old: Option<&Entry>, new: Option<&CostInfo>) {
        let (mut delta, mut tombstone_delta) = (0, 0);
        if let Some(old) = old {
            if old.expire_at().is_some() && !old.is_tombstone() {
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

    pub(super) fn update_alarm(&self) {
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
                    let Some(at) = entry.expire_at().filter(|_| !entry.is_tombstone()) else {
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
                // not wait for it (`--write-ack`, fsync): its receipt is dropped.
                shard.evicted += 1;
                tracing::debug!(key = %String::from_utf8_lossy(&key), "evicted");
                let _not_waited_for = self.write_locked(
                    &mut shard,
                    hash,
                    &Op::Delete {
                        key: Bytes::from(key),
                    },
                    now,
                );
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::super::testing::put;
    use super::*;
    use crate::store::hook::testing::RecordingHook;
    use crate::store::hook::Versioning;

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
            let _ = engine.apply(&put(&format!("k{index}"), &"x".repeat(100), None), now);
            index += 1;
        }
        assert!(engine.memory().alarm);
        assert!(engine.used_bytes() >= 80_000);
        // Below high but above low: still refused (hysteresis).
        let mut removed = 0;
        while engine.used_bytes() >= 75_000 {
            let _ = engine.apply(
                &Op::Delete {
                    key: Bytes::from(format!("k{removed}")),
                },
                now,
            );
            removed += 1;
        }
        assert!(!engine.make_room());
        while engine.used_bytes() >= 50_000 {
            let _ = engine.apply(
                &Op::Delete {
                    key: Bytes::from(format!("k{removed}")),
                },
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
            let _ = engine.apply(
                &put(
                    &format!("k{index}"),
                    &"x".repeat(100),
                    Some(now + 60_000 + index),
                ),
                now,
            );
        }
        assert!(engine.stats().evicted > 0);
        assert!(engine.used_bytes() < 82_000);
    }

    /// An eviction under replicated versioning is a replicated delete: it leaves a tombstone,
    /// hands it to the hook, and the tombstone costs nothing against the limit, so evicting keys
    /// as small as their tombstones still makes progress and the alarm clears at the low
    /// watermark. The client whose write made room does not wait for the eviction.
    #[test]
    fn eviction_replicates_a_tombstone_outside_the_budget() {
        let engine = Arc::new(MemoryEngine::new(EngineConfig {
            limit_bytes: 100_000,
            high_watermark: 0.8,
            low_watermark: 0.5,
            policy: EvictionPolicy::VolatileTtl,
        }));
        let hook = Arc::new(RecordingHook::new(Versioning::Replicated));
        assert!(engine.set_hook(hook.clone()));
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
            let before = hook.recorded().local.len() as u64;
            let receipt = engine.apply(
                &put(&format!("k{index}"), "x", Some(now + 60_000 + index)),
                now,
            );
            // The receipt is the put's own record, never an eviction's.
            assert_eq!(receipt.replicated, Some((before + 1, before + 1)));
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
        // Every write and every eviction went to the hook, nothing else.
        assert_eq!(hook.recorded().local.len() as u64, 5000 + stats.evicted);
        // Each evicted key is a tombstone, absent to reads.
        let evicted: Vec<Bytes> = (0..5000)
            .map(|index| Bytes::from(format!("k{index}")))
            .filter(|key| engine.key(key).get().is_none())
            .collect();
        assert_eq!(evicted.len() as u64, stats.evicted);
        let records = engine.read_records(&evicted);
        assert_eq!(records.len(), evicted.len());
        assert!(records.iter().all(|record| record.is_tombstone()));
    }
}
