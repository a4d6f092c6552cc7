//! Iteration over the keyspace: SCAN's cursor over every shard, and full passes (KEYS).

use super::{unix_ms, MemoryEngine, SHARDS, SHARD_BITS};
use crate::store::entry::Entry;

impl MemoryEngine {
    /// One SCAN step. The cursor packs the shard in its low bits and that shard's
    /// reverse-binary bucket cursor above them; it stays below 2^53 for any table size this
    /// process can hold. `visit` sees each live entry of the visited buckets.
    pub fn scan(&self, cursor: u64, count: usize, visit: impl FnMut(&Entry)) -> u64 {
        self.scan_entries(cursor, count, false, visit)
    }

    /// [`MemoryEngine::scan`] over every stored entry when `raw` (tombstones and expired
    /// entries included: replication snapshots), else over live entries only.
    pub(super) fn scan_entries(
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

    /// A key chosen at random among the live ones (RANDOMKEY), `None` when there is none:
    /// scans from random cursors, then walks the keyspace once if they all land on emptiness.
    pub fn random_key(&self, mut random: impl FnMut() -> u64) -> Option<Vec<u8>> {
        for _ in 0..16 {
            let start = random() & ((1 << 50) - 1);
            let mut found = None;
            self.scan_entries(start, 1, false, |entry| {
                found.get_or_insert_with(|| entry.key().to_vec());
            });
            if found.is_some() {
                return found;
            }
        }
        let mut found = None;
        self.for_each(|entry| {
            found.get_or_insert_with(|| entry.key().to_vec());
        });
        found
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::put;
    use super::*;
    use crate::store::engine::EngineConfig;
    use crate::store::unix_ms;

    #[test]
    fn scan_cursor_covers_all_shards() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        for index in 0..500 {
            let _ = engine.apply(&put(&format!("k{index}"), "v", None), now);
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
