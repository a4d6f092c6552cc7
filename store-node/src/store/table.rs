//! A chained hash table with a power-of-two bucket array, like Redis's dict. Chaining (rather
//! than open addressing) is what makes SCAN's reverse-binary cursor work: a full iteration
//! returns every key present throughout, even when the table grows or shrinks in between.

use super::entry::Entry;

/// A chain link. The key's full hash is kept beside the entry: a lookup compares it before the
/// key, so walking past other keys of the bucket never touches their blobs (a cache miss each),
/// and a resize re-indexes without hashing any key again. The node still fits the allocator's
/// 32-byte class that the 24 bytes without it already took.
struct Node {
    entry: Entry,
    next: Option<Box<Node>>,
    hash: u64,
}

/// Where a key sits: its bucket and how many links down the chain. Valid until the table next
/// changes; it lets a read-modify-write compare the key once, not at every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    index: usize,
    depth: usize,
}

/// Buckets never shrink below this.
const MIN_BUCKETS: usize = 16;

/// A set of entries keyed by their key bytes.
pub struct Table {
    buckets: Vec<Option<Box<Node>>>,
    len: usize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Table")
            .field("len", &self.len)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

/// Advances a reverse-binary cursor over a table of `mask + 1` buckets (Redis's `dictScan`).
pub fn next_cursor(cursor: u64, mask: u64) -> u64 {
    let mut value = cursor | !mask;
    value = value.reverse_bits();
    value = value.wrapping_add(1);
    value.reverse_bits()
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    /// An empty table. Callers pass every key's hash, computed once by the engine's hasher, so
    /// one hash serves shard and bucket.
    pub fn new() -> Table {
        let mut buckets = Vec::new();
        buckets.resize_with(MIN_BUCKETS, || None);
        Table { buckets, len: 0 }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of buckets (a power of two).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    fn index(&self, hash: u64) -> usize {
        (hash as usize) & (self.buckets.len() - 1)
    }

    /// The entry for `key`.
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        let mut current = self.buckets[self.index(hash)].as_deref();
        while let Some(node) = current {
            if node.hash == hash && node.entry.key() == key {
                return Some(&node.entry);
            }
            current = node.next.as_deref();
        }
        None
    }

    /// The entry for `key`, mutably.
    pub fn get_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut Entry> {
        let index = self.index(hash);
        let mut current = self.buckets[index].as_deref_mut();
        while let Some(node) = current {
            if node.hash == hash && node.entry.key() == key {
                return Some(&mut node.entry);
            }
            current = node.next.as_deref_mut();
        }
        None
    }

    /// Where the entry for `key` is, if present.
    pub fn position(&self, hash: u64, key: &[u8]) -> Option<Position> {
        let index = self.index(hash);
        let mut current = self.buckets[index].as_deref();
        let mut depth = 0;
        while let Some(node) = current {
            if node.hash == hash && node.entry.key() == key {
                return Some(Position { index, depth });
            }
            current = node.next.as_deref();
            depth += 1;
        }
        None
    }

    /// The entry at `position` (from [`Table::position`], the table unchanged since).
    pub fn at(&self, position: Position) -> Option<&Entry> {
        let mut current = self.buckets.get(position.index)?.as_deref();
        for _ in 0..position.depth {
            current = current?.next.as_deref();
        }
        current.map(|node| &node.entry)
    }

    /// The entry at `position`, mutably.
    pub fn at_mut(&mut self, position: Position) -> Option<&mut Entry> {
        let mut current = self.buckets.get_mut(position.index)?.as_deref_mut();
        for _ in 0..position.depth {
            current = current?.next.as_deref_mut();
        }
        current.map(|node| &mut node.entry)
    }

    /// Like [`Table::insert`] with the key's place already found: `Some` replaces the entry at
    /// that position (from [`Table::position`] of this key, the table unchanged since), `None`
    /// adds the entry as a new key without searching for it again.
    pub fn insert_at(
        &mut self,
        hash: u64,
        position: Option<Position>,
        entry: Entry,
    ) -> Option<Entry> {
        if let Some(slot) = position.and_then(|position| self.at_mut(position)) {
            debug_assert!(slot.key() == entry.key(), "a stale table position");
            return Some(std::mem::replace(slot, entry));
        }
        debug_assert!(
            self.get(hash, entry.key()).is_none(),
            "a stale table position"
        );
        self.push(hash, entry);
        None
    }

    /// Makes room for `additional` more entries without growing again (a bulk load, where
    /// doubling from the minimum would re-hash every key about once more).
    pub fn reserve(&mut self, additional: usize) {
        let target = (self.len + additional).next_power_of_two().max(MIN_BUCKETS);
        if target > self.buckets.len() {
            self.resize(target);
        }
    }

    /// Inserts or replaces; returns the replaced entry.
    pub fn insert(&mut self, hash: u64, entry: Entry) -> Option<Entry> {
        if let Some(slot) = self.get_mut(hash, entry.key()) {
            return Some(std::mem::replace(slot, entry));
        }
        self.push(hash, entry);
        None
    }

    /// Adds an entry whose key is not in the table, at the front of its chain.
    fn push(&mut self, hash: u64, entry: Entry) {
        let index = self.index(hash);
        let next = self.buckets[index].take();
        self.buckets[index] = Some(Box::new(Node { entry, next, hash }));
        self.len += 1;
        if self.len > self.buckets.len() {
            self.resize(self.buckets.len() * 2);
        }
    }

    /// Removes and returns the entry for `key`.
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Option<Entry> {
        let index = self.index(hash);
        let mut link = &mut self.buckets[index];
        while link
            .as_ref()
            .is_some_and(|node| node.hash != hash || node.entry.key() != key)
        {
            link = &mut link.as_mut()?.next;
        }
        let mut node = link.take()?;
        *link = node.next.take();
        self.len -= 1;
        self.maybe_shrink();
        Some(node.entry)
    }

    fn maybe_shrink(&mut self) {
        // Shrink at 1/8 fill so a table hovering around a boundary does not flap.
        if self.buckets.len() > MIN_BUCKETS && self.len < self.buckets.len() / 8 {
            let target = (self.len * 2).next_power_of_two().max(MIN_BUCKETS);
            self.resize(target);
        }
    }

    fn resize(&mut self, target: usize) {
        let mut buckets: Vec<Option<Box<Node>>> = Vec::new();
        buckets.resize_with(target, || None);
        let old = std::mem::replace(&mut self.buckets, buckets);
        let mask = target - 1;
        for mut chain in old {
            while let Some(mut node) = chain {
                chain = node.next.take();
                let index = (node.hash as usize) & mask;
                node.next = self.buckets[index].take();
                self.buckets[index] = Some(node);
            }
        }
    }

    /// Visits the bucket at `cursor` and returns the next cursor (0 when the iteration is done).
    pub fn scan(&self, cursor: u64, mut visit: impl FnMut(&Entry)) -> u64 {
        let mask = (self.buckets.len() - 1) as u64;
        let mut current = self.buckets[(cursor & mask) as usize].as_deref();
        while let Some(node) = current {
            visit(&node.entry);
            current = node.next.as_deref();
        }
        next_cursor(cursor, mask)
    }

    /// Removes the entries of the bucket at `cursor` for which `remove` says so, handing each to
    /// `removed`; returns the next cursor.
    pub fn retain_bucket(
        &mut self,
        cursor: u64,
        mut remove: impl FnMut(&Entry) -> bool,
        mut removed: impl FnMut(Entry),
    ) -> u64 {
        let mask = (self.buckets.len() - 1) as u64;
        let index = (cursor & mask) as usize;
        // Unlink in place: a bucket with nothing to remove (the common case for the expiry
        // sweep) is only read, never rewritten.
        let mut link = &mut self.buckets[index];
        while link.is_some() {
            if link.as_ref().is_some_and(|node| remove(&node.entry)) {
                if let Some(mut node) = link.take() {
                    *link = node.next.take();
                    self.len -= 1;
                    removed(node.entry);
                }
            } else if let Some(node) = link {
                link = &mut node.next;
            }
        }
        let next = next_cursor(cursor, mask);
        self.maybe_shrink();
        next
    }

    /// Visits every entry.
    pub fn for_each(&self, mut visit: impl FnMut(&Entry)) {
        for bucket in &self.buckets {
            let mut current = bucket.as_deref();
            while let Some(node) = current {
                visit(&node.entry);
                current = node.next.as_deref();
            }
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        let mut buckets = Vec::new();
        buckets.resize_with(MIN_BUCKETS, || None);
        self.buckets = buckets;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::value::Kind;
    use foldhash::fast::FixedState;
    use std::collections::BTreeSet;
    use std::hash::BuildHasher;

    fn entry(key: &str) -> Entry {
        let header = crate::store::state::Header {
            kind: Kind::String,
            expire_at: None,
            stamp: None,
            absent: false,
            plain: true,
            has_dead: false,
        };
        Entry::new(key.as_bytes(), &header, b"v", 0)
    }

    #[test]
    fn insert_get_remove_with_resizes() {
        let hasher = FixedState::with_seed(1);
        let mut table = Table::new();
        for index in 0..1000 {
            let key = format!("k{index}");
            assert!(table
                .insert(hasher.hash_one(key.as_bytes()), entry(&key))
                .is_none());
        }
        assert_eq!(table.len(), 1000);
        assert_eq!(table.bucket_count(), 1024);
        let key = b"k500";
        assert!(table.get(hasher.hash_one(&key[..]), key).is_some());
        assert!(table
            .insert(hasher.hash_one(&key[..]), entry("k500"))
            .is_some());
        for index in 0..990 {
            let key = format!("k{index}");
            assert!(table
                .remove(hasher.hash_one(key.as_bytes()), key.as_bytes())
                .is_some());
        }
        assert_eq!(table.len(), 10);
        assert!(table.bucket_count() < 1024);
        assert!(table.get(hasher.hash_one(&b"k995"[..]), b"k995").is_some());
        assert!(table.get(hasher.hash_one(&b"k5"[..]), b"k5").is_none());
    }

    #[test]
    fn a_position_reaches_its_key_down_the_chain_until_the_table_changes() {
        // Every key in one bucket: positions at depth 0, 1 and 2.
        let mut table = Table::new();
        for (index, key) in ["a", "b", "c"].into_iter().enumerate() {
            assert!(table
                .insert_at(index as u64 * 16, None, entry(key))
                .is_none());
        }
        assert_eq!(table.len(), 3);
        for (index, key) in ["a", "b", "c"].into_iter().enumerate() {
            let hash = index as u64 * 16;
            let position = table.position(hash, key.as_bytes()).expect("present");
            assert_eq!(table.at(position).map(Entry::key), Some(key.as_bytes()));
            assert_eq!(
                table.at_mut(position).map(|entry| entry.key().to_vec()),
                Some(key.as_bytes().to_vec())
            );
            let replaced = table.insert_at(hash, Some(position), entry(key));
            assert_eq!(replaced.as_ref().map(Entry::key), Some(key.as_bytes()));
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.position(0, b"d"), None);
        assert_eq!(table.position(16, b"a"), None, "same bucket, other hash");
    }

    #[test]
    fn scan_returns_every_stable_key_across_growth_and_shrink() {
        let hasher = FixedState::with_seed(7);
        let mut table = Table::new();
        for index in 0..200 {
            let key = format!("stable{index}");
            table.insert(hasher.hash_one(key.as_bytes()), entry(&key));
        }
        let mut seen = BTreeSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = table.scan(cursor, |entry| {
                seen.insert(String::from_utf8_lossy(entry.key()).into_owned());
            });
            // Churn: grow a lot, then remove it all again.
            if round < 30 {
                for index in 0..100 {
                    let key = format!("churn{round}-{index}");
                    table.insert(hasher.hash_one(key.as_bytes()), entry(&key));
                }
            } else if round < 60 {
                for index in 0..100 {
                    let key = format!("churn{}-{index}", round - 30);
                    table.remove(hasher.hash_one(key.as_bytes()), key.as_bytes());
                }
            }
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for index in 0..200 {
            assert!(
                seen.contains(&format!("stable{index}")),
                "missed stable{index}"
            );
        }
    }
}
