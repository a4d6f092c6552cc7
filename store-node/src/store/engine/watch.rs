//! `WATCH`: which clients watch which keys. Every change of a key, however it comes (a local
//! write, a record merged from a peer, a touch, expiry, eviction, FLUSHALL), sets the flags of
//! its watchers, as Redis's `signalModifiedKey` does; `EXEC` aborts when a flag is set. The
//! registry lives in the key's shard, under the lock every change already holds, and costs a
//! test of an empty map while nobody watches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::{MemoryEngine, Shard};

/// Watched keys of a shard, with their watchers' flags.
pub(super) type Watchers = HashMap<Bytes, Vec<Weak<AtomicBool>>, foldhash::fast::RandomState>;

/// Prunes a shard's registry of keys nobody watches any more once it holds this many.
const PRUNE_AT: usize = 1024;

/// One client's watch of one key.
#[derive(Debug)]
pub struct Watch {
    key: Bytes,
    touched: Arc<AtomicBool>,
    existed: bool,
}

impl Watch {
    /// The key watched.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// Whether the key changed since the watch began.
    pub fn touched(&self) -> bool {
        self.touched.load(Ordering::Acquire)
    }

    /// Whether the key existed when the watch began (a key that existed and is gone now
    /// expired meanwhile, even if nothing removed it yet).
    pub fn existed(&self) -> bool {
        self.existed
    }
}

impl MemoryEngine {
    /// Starts watching `key`.
    pub fn watch(&self, key: &Bytes) -> Watch {
        let mut access = self.key(key);
        let existed = access.get().is_some();
        let touched = Arc::new(AtomicBool::new(false));
        let shard = &mut *access.shard;
        if shard.watched.len() >= PRUNE_AT {
            shard.watched.retain(|_, watchers| {
                watchers.retain(|watcher| watcher.strong_count() > 0);
                !watchers.is_empty()
            });
        }
        let watchers = shard.watched.entry(key.clone()).or_default();
        watchers.retain(|watcher| watcher.strong_count() > 0);
        watchers.push(Arc::downgrade(&touched));
        Watch {
            key: key.clone(),
            touched,
            existed,
        }
    }

    /// Flags the watchers of `key` (in its locked shard): it changed.
    pub(super) fn touch_watched(&self, shard: &mut Shard, key: &[u8]) {
        if shard.watched.is_empty() {
            return;
        }
        if let Some(watchers) = shard.watched.remove(key) {
            for watcher in watchers {
                if let Some(flag) = watcher.upgrade() {
                    flag.store(true, Ordering::Release);
                }
            }
        }
    }

    /// Flags the watchers of every key of a shard (FLUSHALL of a node without versions).
    pub(super) fn touch_all_watched(&self, shard: &mut Shard) {
        for (_, watchers) in shard.watched.drain() {
            for watcher in watchers {
                if let Some(flag) = watcher.upgrade() {
                    flag.store(true, Ordering::Release);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::put;
    use super::*;
    use crate::store::engine::EngineConfig;
    use crate::store::record::Record;
    use crate::store::stamp::Stamp;
    use crate::store::unix_ms;
    use crate::store::value::Value;

    #[test]
    fn local_writes_merges_and_expiry_flag_watchers() {
        let engine = MemoryEngine::new(EngineConfig::default());
        let now = unix_ms();
        let _ = engine.apply(&put("a", "1", None), now);
        let (a, b, c) = (
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        );
        let watch_a = engine.watch(&a);
        let watch_b = engine.watch(&b);
        assert!(watch_a.existed() && !watch_b.existed());
        assert!(!watch_a.touched());
        let _ = engine.apply(&put("a", "2", None), now);
        assert!(watch_a.touched());
        assert!(!watch_b.touched());
        let record = Record::live(
            b.clone(),
            Stamp { hlc: 1, origin: 9 },
            Value::String(c.clone()),
            None,
        );
        assert!(engine.merge_record(&record, now, 0));
        assert!(watch_b.touched());
        let _ = engine.apply(&put("c", "x", Some(now + 20)), now);
        let watch_c = engine.watch(&c);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(engine.key(b"c").get().is_none());
        assert!(watch_c.touched());
    }
}
