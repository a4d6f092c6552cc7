//! The replicated unit: a [`Record`] is the whole state of one key after a write (a live value
//! with its absolute expiry, or a tombstone), stamped for last-writer-wins; a [`Touch`] extends
//! the expiry of one exact version. Also the deterministic key hashing every node must share so
//! that bucket digests agree across nodes and versions.

use bytes::Bytes;

use crate::store::entry::HashIter;
use crate::store::{Stamp, Value};

/// Number of anti-entropy buckets keys are hashed into.
pub const BUCKETS: usize = 256;

/// The state of a key carried by a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// The key holds `value`, expiring at `expire_at` (Unix ms; `None` = persistent).
    Live {
        /// The whole value.
        value: Value,
        /// Absolute expiry in Unix milliseconds.
        expire_at: Option<u64>,
    },
    /// The key was deleted at `deleted_at_ms` (Unix ms, the deleting node's wall clock); kept
    /// so that the delete wins over older values, collected after the grace period.
    Tombstone {
        /// When the delete happened (Unix ms).
        deleted_at_ms: u64,
    },
}

/// The whole state of one key after a write, with the write's stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Bytes,
    /// The version: the highest `(hlc, origin)` wins everywhere.
    pub stamp: Stamp,
    /// The value or the tombstone.
    pub state: RecordState,
}

impl Record {
    /// A live record.
    pub fn live(
        key: impl Into<Bytes>,
        stamp: Stamp,
        value: Value,
        expire_at: Option<u64>,
    ) -> Record {
        Record {
            key: key.into(),
            stamp,
            state: RecordState::Live { value, expire_at },
        }
    }

    /// A tombstone.
    pub fn tombstone(key: impl Into<Bytes>, stamp: Stamp, deleted_at_ms: u64) -> Record {
        Record {
            key: key.into(),
            stamp,
            state: RecordState::Tombstone { deleted_at_ms },
        }
    }

    /// Whether this record is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.state, RecordState::Tombstone { .. })
    }

    /// Approximate encoded size in bytes (for log and batch limits).
    pub fn size(&self) -> usize {
        self.view().size()
    }

    /// The record's fields, borrowed.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            key: &self.key,
            stamp: self.stamp,
            state: match &self.state {
                RecordState::Live { value, expire_at } => StateView::Live {
                    value: match value {
                        Value::String(data) => ValueView::String(data),
                        Value::Hash(fields) => ValueView::Hash(fields),
                    },
                    expire_at: *expire_at,
                },
                RecordState::Tombstone { deleted_at_ms } => StateView::Tombstone {
                    deleted_at_ms: *deleted_at_ms,
                },
            },
        }
    }
}

/// A record's fields borrowed from where they live (a [`Record`], a stored entry), so the
/// write-ahead log and snapshots encode a stored entry straight into their buffers. Building
/// a [`Record`] first copied every logged value into fresh allocations that another thread
/// freed, and the allocator kept faulting in new zeroed pages for them (a fifth of the RESP
/// thread's CPU in disc mode).
#[derive(Clone)]
pub struct RecordView<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The version.
    pub stamp: Stamp,
    /// The value or the tombstone.
    pub state: StateView<'a>,
}

/// The state of a key, borrowed (see [`RecordState`]).
#[derive(Clone)]
pub enum StateView<'a> {
    /// The key holds `value`, expiring at `expire_at` (Unix ms).
    Live {
        /// The whole value.
        value: ValueView<'a>,
        /// Absolute expiry in Unix milliseconds.
        expire_at: Option<u64>,
    },
    /// The key was deleted at `deleted_at_ms` (Unix ms).
    Tombstone {
        /// When the delete happened (Unix ms).
        deleted_at_ms: u64,
    },
}

/// A value, borrowed.
#[derive(Clone)]
pub enum ValueView<'a> {
    /// A string.
    String(&'a [u8]),
    /// A hash, as field/value pairs.
    Hash(&'a [(Bytes, Bytes)]),
    /// A hash, as a stored entry's encoded payload.
    StoredHash(HashIter<'a>),
}

impl<'a> ValueView<'a> {
    /// Calls `visit` with every field/value pair of a hash (nothing for a string).
    pub fn for_each_pair(&self, mut visit: impl FnMut(&'a [u8], &'a [u8])) {
        match self {
            ValueView::String(_) => {}
            ValueView::Hash(fields) => {
                for (field, value) in fields.iter() {
                    visit(field, value);
                }
            }
            ValueView::StoredHash(pairs) => {
                for (field, value) in pairs.clone() {
                    visit(field, value);
                }
            }
        }
    }
}

impl RecordView<'_> {
    /// Approximate encoded size in bytes (for log and batch limits).
    pub fn size(&self) -> usize {
        let value = match &self.state {
            StateView::Live { value, .. } => match value {
                ValueView::String(bytes) => bytes.len() + 4,
                hash => {
                    let mut size = 4;
                    hash.for_each_pair(|field, value| size += field.len() + value.len() + 8);
                    size
                }
            },
            StateView::Tombstone { .. } => 0,
        };
        self.key.len() + 4 + 12 + 10 + value
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        let key = Bytes::copy_from_slice(self.key);
        match &self.state {
            StateView::Tombstone { deleted_at_ms } => {
                Record::tombstone(key, self.stamp, *deleted_at_ms)
            }
            StateView::Live { value, expire_at } => {
                let value = match value {
                    ValueView::String(data) => Value::String(Bytes::copy_from_slice(data)),
                    ValueView::Hash(fields) => Value::Hash(fields.to_vec()),
                    stored => {
                        let mut fields = Vec::new();
                        stored.for_each_pair(|field, value| {
                            fields.push((
                                Bytes::copy_from_slice(field),
                                Bytes::copy_from_slice(value),
                            ))
                        });
                        Value::Hash(fields)
                    }
                };
                Record::live(key, self.stamp, value, *expire_at)
            }
        }
    }
}

/// Extends the expiry of one version of a key: applies only where the key still holds the
/// version stamped `value_stamp`, and only ever moves the expiry later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The key.
    pub key: Bytes,
    /// The stamp of the value being touched.
    pub value_stamp: Stamp,
    /// The new absolute expiry (Unix ms).
    pub expire_at: u64,
}

impl Touch {
    /// Approximate encoded size in bytes.
    pub fn size(&self) -> usize {
        self.key.len() + 4 + 12 + 8
    }
}

/// 64-bit FNV-1a: fixed and tiny, so every node and every version hashes keys identically (a
/// seeded or std hasher could differ between builds and make digests disagree forever).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The splitmix64 finaliser, to spread bits before summing.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// The anti-entropy bucket of a key.
pub fn bucket_of(key: &[u8]) -> usize {
    bucket_of_hash(key_hash(key))
}

/// The anti-entropy bucket of a key with [`key_hash`] `hash`.
fn bucket_of_hash(hash: u64) -> usize {
    // The top bits: FNV's low bits are weaker.
    (mix(hash) >> 56) as usize % BUCKETS
}

/// The digest contribution of one stored version (live or tombstone).
pub fn version_hash(key: &[u8], stamp: Stamp) -> u64 {
    version_hash_of(key_hash(key), stamp)
}

/// [`version_hash`] of a key with [`key_hash`] `hash`.
fn version_hash_of(hash: u64, stamp: Stamp) -> u64 {
    mix(hash ^ mix(stamp.hlc) ^ mix(u64::from(stamp.origin).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// Per-bucket digests maintained incrementally: the wrapping sum of [`version_hash`] of every
/// stored `(key, stamp)`, tombstones included. Two nodes holding the same versions have equal
/// digests whatever the insertion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDigests {
    sums: Vec<u64>,
}

impl Default for BucketDigests {
    fn default() -> Self {
        BucketDigests {
            sums: vec![0; BUCKETS],
        }
    }
}

impl BucketDigests {
    /// All buckets empty.
    pub fn new() -> BucketDigests {
        BucketDigests::default()
    }

    /// Accounts a stored version.
    pub fn add(&mut self, key: &[u8], stamp: Stamp) {
        self.replace(key_hash(key), None, Some(stamp));
    }

    /// Removes a stored version.
    pub fn remove(&mut self, key: &[u8], stamp: Stamp) {
        self.replace(key_hash(key), Some(stamp), None);
    }

    /// Replaces the stored version `old` of the key with [`key_hash`] `hash` by `new` (either
    /// may be absent): one hash of the key for both, where a write hashed it twice per
    /// version (the bucket and the version hash), 3 % of a disc node's CPU under SETs.
    pub fn replace(&mut self, hash: u64, old: Option<Stamp>, new: Option<Stamp>) {
        let sum = &mut self.sums[bucket_of_hash(hash)];
        if let Some(stamp) = old {
            *sum = sum.wrapping_sub(version_hash_of(hash, stamp));
        }
        if let Some(stamp) = new {
            *sum = sum.wrapping_add(version_hash_of(hash, stamp));
        }
    }

    /// The digests, one per bucket.
    pub fn sums(&self) -> &[u64] {
        &self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_across_builds() {
        // FNV-1a test vectors: a change here would split every mixed-version cluster.
        assert_eq!(key_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_hash(b"foobar"), 0x8594_4171_f739_67e8);
        assert!(bucket_of(b"session:1") < BUCKETS);
    }

    #[test]
    fn digests_are_order_independent_and_removable() {
        let first = Stamp { hlc: 1, origin: 1 };
        let second = Stamp { hlc: 2, origin: 1 };
        let mut one = BucketDigests::new();
        one.add(b"a", first);
        one.add(b"b", second);
        let mut two = BucketDigests::new();
        two.add(b"b", second);
        two.add(b"a", first);
        assert_eq!(one, two);
        two.remove(b"a", first);
        two.add(b"a", second);
        assert_ne!(one, two);
        two.remove(b"a", second);
        two.remove(b"b", second);
        assert_eq!(two, BucketDigests::new());
    }

    #[test]
    fn replacing_a_version_equals_removing_it_and_adding_the_new_one() {
        let stamp = |hlc| Stamp { hlc, origin: 3 };
        let mut apart = BucketDigests::new();
        apart.add(b"session:1", stamp(10));
        apart.remove(b"session:1", stamp(10));
        apart.add(b"session:1", stamp(11));
        let mut replaced = BucketDigests::new();
        replaced.replace(key_hash(b"session:1"), None, Some(stamp(10)));
        replaced.replace(key_hash(b"session:1"), Some(stamp(10)), Some(stamp(11)));
        assert_eq!(replaced, apart);
        assert_ne!(replaced, BucketDigests::new());
        replaced.replace(key_hash(b"session:1"), Some(stamp(11)), None);
        assert_eq!(replaced, BucketDigests::new());
    }

    #[test]
    fn keys_spread_over_buckets() {
        let mut used = [false; BUCKETS];
        for index in 0..10_000 {
            used[bucket_of(format!("session:{index}").as_bytes())] = true;
        }
        assert_eq!(used.iter().filter(|used| **used).count(), BUCKETS);
    }
}
