//! Exclusive access to several keys at once, for commands that read or write more than one key
//! atomically (MSETNX, SMOVE, LMOVE, SINTERSTORE, COPY, ...): their shards are locked in index
//! order, the order every multi-shard lock of the engine takes, so two such commands cannot
//! deadlock.

use parking_lot::MutexGuard;

use super::{MemoryEngine, Shard};
use crate::store::entry::Entry;
use crate::store::hook::WriteReceipt;
use crate::store::op::Op;
use crate::store::unix_ms;

/// The locked shards of a set of keys.
pub struct KeysAccess<'a> {
    engine: &'a MemoryEngine,
    shards: Vec<(usize, MutexGuard<'a, Shard>)>,
    now: u64,
}

impl KeysAccess<'_> {
    /// The time this access reads and writes at (Unix ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    fn shard(&mut self, hash: u64) -> Option<&mut Shard> {
        let index = MemoryEngine::shard_of(hash);
        self.shards
            .iter_mut()
            .find(|(own, _)| *own == index)
            .map(|(_, shard)| &mut **shard)
    }

    /// The live entry of `key` (one of the locked keys), expiring it lazily.
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        let engine = self.engine;
        let now = self.now;
        let hash = engine.hash(key);
        let shard = self.shard(hash)?;
        engine.get_locked(shard, hash, key, now)
    }

    /// Applies `op` (about one of the locked keys) through the engine's write path.
    pub fn write(&mut self, op: Op) -> WriteReceipt {
        let engine = self.engine;
        let now = self.now;
        let Some(key) = op.key() else {
            return WriteReceipt::NONE;
        };
        let hash = engine.hash(key);
        match self.shard(hash) {
            Some(shard) => engine.write_locked(shard, hash, &op, now),
            None => WriteReceipt::NONE,
        }
    }
}

impl MemoryEngine {
    /// Locks the shards of `keys` for a multi-key read-modify-write at the current time.
    pub fn keys<'a>(&'a self, keys: &[&[u8]]) -> KeysAccess<'a> {
        let mut indexes: Vec<usize> = keys
            .iter()
            .map(|key| Self::shard_of(self.hash(key)))
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let shards = indexes
            .into_iter()
            .map(|index| (index, self.shards[index].lock()))
            .collect();
        KeysAccess {
            engine: self,
            shards,
            now: unix_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::testing::put;
    use super::*;
    use crate::store::engine::EngineConfig;

    #[test]
    fn several_keys_read_and_write_under_one_lock() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let _ = engine.apply(&put("a", "1", None), unix_ms());
        let keys: Vec<Vec<u8>> = (0..100)
            .map(|index| format!("k{index}").into_bytes())
            .collect();
        let mut names: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        names.push(b"a");
        let mut access = engine.keys(&names);
        assert_eq!(
            access.get(b"a").and_then(Entry::string).as_deref(),
            Some(&b"1"[..])
        );
        for key in &keys {
            assert!(access.get(key).is_none());
            let _ = access.write(put(&String::from_utf8_lossy(key), "v", None));
        }
        let _ = access.write(Op::Delete {
            key: Bytes::from_static(b"a"),
        });
        drop(access);
        assert_eq!(engine.len(), 100);
    }
}
