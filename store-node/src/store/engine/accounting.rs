//! Memory accounting: the estimated cost of every stored entry, the used-memory figure the
//! limit is compared with, the high/low watermark alarm with its hysteresis, and sampled
//! eviction when a growth write meets the alarm.
//!
//! Used memory is the process's real footprint when the node samples one
//! ([`MemoryEngine::set_footprint_sample`], every 100 ms in a server): the last sample plus
//! twice what was accounted since (data and connection buffers), so a burst between two
//! samples is seen at once. Without samples (engines in tests, several nodes in one process)
//! it is the data estimate alone. The watermarks apply to the limit minus a reserve
//! ([`memory_reserve`]) kept for transient peaks. docs/memory.md has the measurements.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

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

/// Growth accounted since the last footprint sample counts this many times: the footprint grew
/// 1.4 to 1.6 bytes per accounted byte in the fills of docs/memory.md (allocator size classes,
/// the op-log's copy of each record until the peers hold it, read buffers); 2 errs on the
/// safe side for the 100 ms until the next sample replaces the estimate with the truth.
const GROWTH_FACTOR: u64 = 2;

/// How far the footprint must move from the sample the eviction target was last set for before
/// the target follows it: smaller moves are the noise of sampling and allocation.
const EVICTION_TARGET_STEP: u64 = 1 << 20;

/// Eviction toward the data target keeps at least `low watermark / DATA_FLOOR_DIVISOR` bytes of
/// data (a working set: 4.4 MiB under a 64 MiB limit) while the footprint stays under the
/// effective limit. The target follows footprint growth that is not data (tombstones, the
/// op-log, replication buffers, allocator holes), and in a cluster under pressure that growth
/// feeds itself: every eviction is a tombstone and a replicated delete on every member, which
/// raises their footprints, lowers their targets and makes them evict in turn. Followed without
/// a floor, the targets of a 3-node cluster filled by pipelined writers fell to zero within
/// seconds and the nodes were emptied (700 keys left next to 21,000 tombstones) while their
/// footprints stayed above the high watermark: evicting data cannot lower a footprint that is
/// mostly not data. For the same reason the floor holds inside the reserve too: a growth
/// write whose node has used half the reserve is refused instead (`OOM`), since evicting
/// further would empty the node without moving its footprint away from the kernel's limit.
const DATA_FLOOR_DIVISOR: u64 = 8;

/// The smallest reserve kept between the effective limit and the limit.
pub const RESERVE_FLOOR: u64 = 16 << 20;

/// What a request's declared argument bytes may cost at most while it executes, per byte: the
/// read buffer (up to twice the argument while it grows), the stored entry, the op-log's record
/// and the peer frame it is encoded into. A request whose declared bytes times this do not fit
/// under the effective limit is refused before its bytes are read (docs/memory.md).
pub const VALUE_COST_FACTOR: u64 = 5;

/// The part of `limit` kept free for transient peaks the sampled footprint sees late or not at
/// all: a snapshot chunk being served to a joining peer, replies being written, a burst of
/// large pipelined writes. An eighth of the limit, at least [`RESERVE_FLOOR`], at most a
/// quarter of the limit (so tiny test limits keep most of their room); 0 without a limit. The
/// watermarks are fractions of `limit - reserve`.
pub fn memory_reserve(limit: u64) -> u64 {
    (limit / 8).max(RESERVE_FLOOR).min(limit / 4)
}

/// The sampled footprint and what was accounted since.
#[derive(Debug)]
pub(super) struct Footprint {
    /// The last sampled footprint in bytes; 0 before the first sample.
    sample: AtomicU64,
    /// Accounted data plus buffers when the sample was taken.
    base: AtomicI64,
    /// Bytes held by connection buffers, as the connections report them.
    buffers: AtomicI64,
    /// Whether a peer reports its memory alarm.
    peer_alarm: AtomicBool,
    /// While the alarm is raised under an evicting policy: the data bytes eviction brings the
    /// node down to ([`i64::MAX`] = none yet).
    eviction_target: AtomicI64,
    /// The footprint sample the target was last set for.
    eviction_footprint: AtomicU64,
}

impl Default for Footprint {
    fn default() -> Self {
        Footprint {
            sample: AtomicU64::new(0),
            base: AtomicI64::new(0),
            buffers: AtomicI64::new(0),
            peer_alarm: AtomicBool::new(false),
            eviction_target: AtomicI64::new(i64::MAX),
            eviction_footprint: AtomicU64::new(0),
        }
    }
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
    /// Used memory: the sampled footprint plus the growth accounted since, or the data estimate
    /// without samples. The watermarks compare this.
    pub used_bytes: u64,
    /// Estimated bytes of data and per-key overhead.
    pub data_bytes: u64,
    /// Bytes held by connection buffers.
    pub buffer_bytes: u64,
    /// The last sampled footprint (0 = no sample).
    pub sampled_bytes: u64,
    /// The limit (0 = unlimited).
    pub limit_bytes: u64,
    /// The part of the limit kept for transient peaks; the watermarks are fractions of
    /// `limit_bytes - reserve_bytes`.
    pub reserve_bytes: u64,
    /// Whether a peer reports its memory alarm (growth writes are refused or evict meanwhile).
    pub peer_alarm: bool,
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

    /// Accounted data plus buffers, to pass to [`MemoryEngine::set_footprint_sample`] with a
    /// footprint read after this call (growth in between is counted twice, never missed).
    pub fn footprint_checkpoint(&self) -> i64 {
        self.used.load(Ordering::Relaxed) + self.footprint.buffers.load(Ordering::Relaxed)
    }

    /// Records a sampled footprint (bytes the kernel counts against the limit) taken after
    /// `checkpoint` ([`MemoryEngine::footprint_checkpoint`]); used memory follows it from now
    /// on, and the alarm is raised or cleared accordingly.
    pub fn set_footprint_sample(&self, sample: u64, checkpoint: i64) {
        // The sample before its base: a reader that sees the new base also sees the new sample
        // (it reads them the other way round), at worst the new sample with the old base,
        // which overestimates for one read.
        self.footprint
            .sample
            .store(sample.max(1), Ordering::Release);
        self.footprint.base.store(checkpoint, Ordering::Release);
        self.update_alarm_at(true);
        self.update_eviction_target(sample);
    }

    /// Sets how far eviction goes in data bytes, from a footprint sample. Evicting does not
    /// lower the footprint one for one: freed entries leave holes that new entries of their
    /// size fill, and each eviction leaves a tombstone until every member holds it. Evicting
    /// until the footprint itself fell below the low watermark would evict every key; instead
    /// the data is brought down by what the footprint exceeds the low watermark by when the
    /// alarm is raised, and from then on the target follows the footprint: lowered by what it
    /// grows (tombstones, the op-log, fragmentation), and, below the high watermark, raised by
    /// what it falls (tombstones collected, pages returned), each time it moved by more than
    /// [`EVICTION_TARGET_STEP`]. A target that only fell would ratchet down on every transient
    /// peak and evict every key while the alarm stays raised; one raised above the high
    /// watermark would let the footprint climb into the reserve.
    fn update_eviction_target(&self, sample: u64) {
        let footprint = &self.footprint;
        if self.policy == EvictionPolicy::Noeviction || !self.alarm.load(Ordering::Relaxed) {
            footprint.eviction_target.store(i64::MAX, Ordering::Relaxed);
            return;
        }
        let data = self.used.load(Ordering::Relaxed).max(0);
        let target = footprint.eviction_target.load(Ordering::Relaxed);
        let at = footprint.eviction_footprint.load(Ordering::Relaxed);
        let next = if target == i64::MAX {
            let excess = sample.saturating_sub(self.low) as i64;
            data - excess
        } else if sample > at + EVICTION_TARGET_STEP
            || (sample + EVICTION_TARGET_STEP < at && sample < self.high)
        {
            target - (sample as i64 - at as i64)
        } else {
            return;
        };
        footprint
            .eviction_target
            .store(next.max(0), Ordering::Relaxed);
        footprint
            .eviction_footprint
            .store(sample, Ordering::Relaxed);
    }

    /// A connection's buffers grew (positive) or shrank (negative) by `delta` bytes.
    pub fn add_buffer_bytes(&self, delta: i64) {
        self.footprint.buffers.fetch_add(delta, Ordering::Relaxed);
        if delta > 0 {
            self.update_alarm();
        }
    }

    /// Whether any peer reports its memory alarm: every node holds every key and applies what
    /// its peers accepted, so while one is above its high watermark the others refuse growth
    /// writes (or evict) too.
    pub fn set_peer_alarm(&self, alarm: bool) {
        if self.footprint.peer_alarm.swap(alarm, Ordering::Relaxed) != alarm {
            if alarm {
                tracing::warn!(
                    "a peer raised its memory alarm: growth writes are refused or evict"
                );
            } else {
                tracing::info!("no peer is in memory alarm any more");
            }
        }
    }

    /// Declared request bytes that still fit: what is left under the effective limit divided
    /// by [`VALUE_COST_FACTOR`]; unbounded without a limit.
    pub fn request_room(&self) -> u64 {
        if self.limit == 0 {
            return u64::MAX;
        }
        self.effective.saturating_sub(self.used_bytes()) / VALUE_COST_FACTOR
    }

    pub(super) fn update_alarm(&self) {
        self.update_alarm_at(false);
    }

    /// Raises or clears the alarm; `sampled` when a footprint sample was just taken. With
    /// samples, the alarm clears only at a sample: evictions and deletes lower used memory at
    /// once by what they free, but the footprint follows late and partly (freed entries leave
    /// holes), so an alarm cleared on the accounted figure alone would rise again at the next
    /// sample, and every rise evicts anew toward the low watermark until the node is empty.
    fn update_alarm_at(&self, sampled: bool) {
        if self.limit == 0 {
            return;
        }
        let used = self.used_bytes();
        let alarm = self.alarm.load(Ordering::Relaxed);
        if !alarm && used >= self.high {
            if !self.alarm.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    used,
                    data = self.used.load(Ordering::Relaxed),
                    high = self.high,
                    limit = self.limit,
                    "memory alarm raised"
                );
            }
        } else if alarm
            && used < self.low
            && (sampled || self.footprint.sample.load(Ordering::Relaxed) == 0)
            && self.alarm.swap(false, Ordering::Relaxed)
        {
            tracing::info!(used, low = self.low, "memory alarm cleared");
        }
    }

    /// Used memory in bytes: the last footprint sample plus [`GROWTH_FACTOR`] times the data
    /// and buffers accounted since (minus what was freed since), or the data estimate before
    /// any sample.
    pub fn used_bytes(&self) -> u64 {
        let data = self.used.load(Ordering::Relaxed).max(0);
        let base = self.footprint.base.load(Ordering::Acquire);
        let sample = self.footprint.sample.load(Ordering::Acquire);
        if sample == 0 {
            return data as u64;
        }
        let change = data + self.footprint.buffers.load(Ordering::Relaxed) - base;
        // What was freed since counts once: an eviction or a delete must lower used memory at
        // once, or eviction would go on until the next sample; the allocator returns freed
        // pages within milliseconds, and the next sample corrects what it keeps.
        let change = if change > 0 {
            change * GROWTH_FACTOR as i64
        } else {
            change
        };
        (sample as i64 + change).max(0) as u64
    }

    /// The memory accounting snapshot.
    pub fn memory(&self) -> MemoryStatus {
        MemoryStatus {
            used_bytes: self.used_bytes(),
            data_bytes: self.used.load(Ordering::Relaxed).max(0) as u64,
            buffer_bytes: self.footprint.buffers.load(Ordering::Relaxed).max(0) as u64,
            sampled_bytes: self.footprint.sample.load(Ordering::Relaxed),
            limit_bytes: self.limit,
            reserve_bytes: memory_reserve(self.limit),
            peer_alarm: self.footprint.peer_alarm.load(Ordering::Relaxed),
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
    /// the high watermark. Eviction keeps the data floor ([`DATA_FLOOR_DIVISOR`]); with used
    /// memory half-way into the reserve a growth write is refused. While only a peer is in
    /// alarm, an evicting policy evicts two keys per growth write down to the data floor (the
    /// evictions replicate as deletes and shrink the peer too) and refuses when nothing can be
    /// evicted.
    pub fn make_room(&self) -> bool {
        let alarm = self.alarm.load(Ordering::Relaxed);
        if !alarm && !self.footprint.peer_alarm.load(Ordering::Relaxed) {
            return true;
        }
        if self.policy == EvictionPolicy::Noeviction {
            return false;
        }
        let made = self.evict_for_growth(alarm);
        if !made {
            tracing::debug!(
                used = self.used_bytes(),
                data = self.used.load(Ordering::Relaxed),
                target = self.footprint.eviction_target.load(Ordering::Relaxed),
                alarm,
                "nothing left to evict: a growth write is refused"
            );
        }
        made
    }

    /// Evicts for one growth write under an evicting policy (see [`MemoryEngine::make_room`]);
    /// false when room could not be made because nothing is left to evict.
    fn evict_for_growth(&self, alarm: bool) -> bool {
        if !alarm {
            // The peer's own eviction keeps its footprint down; this node's share stops at the
            // data floor, or a peer held in alarm by what is not data would empty it.
            if self.used.load(Ordering::Relaxed) <= (self.low / DATA_FLOOR_DIVISOR) as i64 {
                return true;
            }
            if !self.evict_one() {
                return false;
            }
            let _second = self.evict_one();
            return true;
        }
        let target = self.footprint.eviction_target.load(Ordering::Relaxed);
        if self.footprint.sample.load(Ordering::Relaxed) > 0 && target != i64::MAX {
            // The footprint follows evictions late and partly: evict down to the data target
            // (see `update_eviction_target`), never below the data floor, then let writes fill
            // what was freed. Deep in the reserve the write is refused (see
            // `DATA_FLOOR_DIVISOR`).
            let target = target.max((self.low / DATA_FLOOR_DIVISOR) as i64);
            let deep_in_reserve = self.used_bytes() >= self.limit - memory_reserve(self.limit) / 2;
            let mut evicted = false;
            for _ in 0..256 {
                if self.used.load(Ordering::Relaxed) <= target || !self.evict_one() {
                    break;
                }
                evicted = true;
            }
            if deep_in_reserve {
                return false;
            }
            return evicted || self.used.load(Ordering::Relaxed) <= target;
        }
        if self.footprint.sample.load(Ordering::Relaxed) > 0 {
            // The alarm rose between two samples, on the growth accounted since the last one:
            // evict only what brings used memory under the high watermark until the next
            // sample sets the target. Evicting toward the low watermark here would empty the
            // node: used memory falls once per evicted byte while the alarm stays raised, and
            // every write until the next sample would evict 256 keys.
            let mut evicted = false;
            for _ in 0..256 {
                if self.used_bytes() < self.high || !self.evict_one() {
                    break;
                }
                evicted = true;
            }
            return evicted || self.used_bytes() < self.high;
        }
        // Without samples used memory is the data estimate, which evictions lower one for one.
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
                        if let Some(hook) = self.hook() {
                            hook.expired(&key);
                        }
                    }
                    return true;
                }
                // An eviction is a delete through the one write path: with replication it
                // leaves a tombstone that replicates (else anti-entropy would bring the key back
                // from a peer), in disc mode it is logged. The client whose write made room does
                // not wait for it (`--write-ack`, fsync): its receipt is dropped.
                shard.evicted += 1;
                tracing::debug!(key = %String::from_utf8_lossy(&key), "evicted");
                if let Some(hook) = self.hook() {
                    hook.evicted(&key);
                }
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
#[path = "accounting_tests.rs"]
mod tests;
