//! Anti-entropy digests: the deterministic key hash every node and every version must share,
//! the bucket of a key, and per-bucket sums of the stored versions (each key's state hash,
//! `super::state::encode::state_hash`) that two nodes compare to find what differs without
//! exchanging keys.

/// Number of anti-entropy buckets keys are hashed into.
pub const BUCKETS: usize = 256;

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

/// The digest contribution of one stored version (a key and its state hash, deletions
/// included).
pub fn version_hash(key: &[u8], version: u64) -> u64 {
    version_hash_of(key_hash(key), version)
}

/// [`version_hash`] of a key with [`key_hash`] `hash`.
fn version_hash_of(hash: u64, version: u64) -> u64 {
    mix(hash ^ mix(version.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// Per-bucket digests maintained incrementally: the wrapping sum of [`version_hash`] of every
/// stored `(key, state hash)`, tombstones included. Two nodes holding the same states have
/// equal digests whatever the insertion order.
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
    pub fn add(&mut self, key: &[u8], version: u64) {
        self.replace(key_hash(key), None, Some(version));
    }

    /// Removes a stored version.
    pub fn remove(&mut self, key: &[u8], version: u64) {
        self.replace(key_hash(key), Some(version), None);
    }

    /// Replaces the stored version `old` of the key with [`key_hash`] `hash` by `new` (either
    /// may be absent): one hash of the key for both, where a write hashed it twice per
    /// version (the bucket and the version hash), 3 % of a disc node's CPU under SETs.
    pub fn replace(&mut self, hash: u64, old: Option<u64>, new: Option<u64>) {
        let sum = &mut self.sums[bucket_of_hash(hash)];
        if let Some(version) = old {
            *sum = sum.wrapping_sub(version_hash_of(hash, version));
        }
        if let Some(version) = new {
            *sum = sum.wrapping_add(version_hash_of(hash, version));
        }
    }

    /// The digests, one per bucket.
    pub fn sums(&self) -> &[u64] {
        &self.sums
    }
}

/// Where each bucket asked for goes in an answer listing several buckets, so one pass over the
/// keyspace sorts every key into its list with one hash and one array lookup.
pub struct BucketPositions {
    positions: [u16; BUCKETS],
}

impl BucketPositions {
    const ABSENT: u16 = u16::MAX;

    /// The positions of `buckets` (the last one wins for a bucket asked twice).
    pub fn new(buckets: &[usize]) -> BucketPositions {
        let mut positions = [Self::ABSENT; BUCKETS];
        for (position, bucket) in buckets.iter().enumerate() {
            if let Some(slot) = positions.get_mut(*bucket) {
                *slot = position as u16;
            }
        }
        BucketPositions { positions }
    }

    /// The position of `key`'s bucket in the answer, `None` when it was not asked for.
    pub fn of(&self, key: &[u8]) -> Option<usize> {
        let position = self.positions[bucket_of(key)];
        (position != Self::ABSENT).then_some(position as usize)
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
        let (first, second) = (1u64, 2u64);
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
        let stamp = |version: u64| version;
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
