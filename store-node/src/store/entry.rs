//! The compact in-memory layout of one key: a single heap allocation holding a small header,
//! the key and the value, so a small session costs one allocation plus a table node.
//!
//! Layout: `flags u8 | lru u32 | key_len varint | [expire_at u64] | [hlc u64, origin u32] | key |
//! payload`. Flags: bits 0-1 the kind, bit 2 an expiry is present, bit 3 a version stamp is
//! present, bit 4 the entry is a tombstone (its payload is `deleted_at` as u64 LE). A hash payload is a sequence of `varint len, field, varint len, value` (like Redis's
//! listpack for small hashes).

use bytes::Bytes;

use super::stamp::Stamp;
use super::value::{get_varint, put_varint, varint_len, HashIter, Kind, Value, ValueView};

const KIND_MASK: u8 = 0b11;
const HAS_EXPIRY: u8 = 0b100;
const HAS_STAMP: u8 = 0b1000;
const TOMBSTONE: u8 = 0b1_0000;
const LRU_AT: usize = 1;
const VARINT_AT: usize = 5;

/// One stored key with its value, optional expiry and optional stamp.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    blob: Box<[u8]>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("kind", &self.kind())
            .field("expire_at", &self.expire_at())
            .finish()
    }
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(bytes)
}

impl Entry {
    /// Builds an entry. `payload` is the value's payload (see [`Value::payload`]).
    pub fn new(
        key: &[u8],
        kind: Kind,
        payload: &[u8],
        expire_at: Option<u64>,
        stamp: Option<Stamp>,
        lru: u32,
    ) -> Entry {
        let mut flags = kind.tag();
        let mut len = VARINT_AT + varint_len(key.len()) + key.len() + payload.len();
        if expire_at.is_some() {
            flags |= HAS_EXPIRY;
            len += 8;
        }
        if stamp.is_some() {
            flags |= HAS_STAMP;
            len += 12;
        }
        let mut blob = Vec::with_capacity(len);
        blob.push(flags);
        blob.extend_from_slice(&lru.to_le_bytes());
        put_varint(&mut blob, key.len());
        if let Some(at) = expire_at {
            blob.extend_from_slice(&at.to_le_bytes());
        }
        if let Some(stamp) = stamp {
            blob.extend_from_slice(&stamp.hlc.to_le_bytes());
            blob.extend_from_slice(&stamp.origin.to_le_bytes());
        }
        blob.extend_from_slice(key);
        blob.extend_from_slice(payload);
        Entry {
            blob: blob.into_boxed_slice(),
        }
    }

    /// A tombstone: the key was deleted at `deleted_at_ms` by the write stamped `stamp`. Kept
    /// (by replication) so the delete wins over older versions; reads treat it as absent.
    pub fn tombstone(key: &[u8], stamp: Stamp, deleted_at_ms: u64, lru: u32) -> Entry {
        let mut entry = Entry::new(
            key,
            Kind::String,
            &deleted_at_ms.to_le_bytes(),
            None,
            Some(stamp),
            lru,
        );
        entry.blob[0] |= TOMBSTONE;
        entry
    }

    /// Whether this entry is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.flags() & TOMBSTONE != 0
    }

    /// When the tombstone's delete happened (Unix ms); `None` for a live entry.
    pub fn deleted_at(&self) -> Option<u64> {
        if !self.is_tombstone() {
            return None;
        }
        let payload = self.payload();
        (payload.len() == 8).then(|| read_u64(payload, 0))
    }

    /// Whether the entry is a live (not expired, not deleted) value at `now` (Unix ms).
    pub fn is_live(&self, now: u64) -> bool {
        !self.is_tombstone() && !self.is_expired(now)
    }

    /// Moves an existing expiry to `expire_at` in place (a replicated touch); false when the
    /// entry has no expiry to move.
    pub fn set_expiry_in_place(&mut self, expire_at: u64) -> bool {
        if self.flags() & HAS_EXPIRY == 0 {
            return false;
        }
        let position = self.expiry_at();
        self.blob[position..position + 8].copy_from_slice(&expire_at.to_le_bytes());
        true
    }

    fn flags(&self) -> u8 {
        self.blob[0]
    }

    /// Returns (offset of the key, key length).
    fn key_span(&self) -> (usize, usize) {
        let mut position = VARINT_AT;
        let len = get_varint(&self.blob, &mut position);
        if self.flags() & HAS_EXPIRY != 0 {
            position += 8;
        }
        if self.flags() & HAS_STAMP != 0 {
            position += 12;
        }
        (position, len)
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        let (at, len) = self.key_span();
        &self.blob[at..at + len]
    }

    /// The raw payload: the string, or the encoded hash.
    pub fn payload(&self) -> &[u8] {
        let (at, len) = self.key_span();
        &self.blob[at + len..]
    }

    /// The value's type.
    pub fn kind(&self) -> Kind {
        Kind::from_tag(self.flags() & KIND_MASK)
    }

    /// The value, borrowed from the entry.
    pub fn value_view(&self) -> ValueView<'_> {
        ValueView::from_payload(self.kind(), self.payload())
    }

    /// The value, copied.
    pub fn value(&self) -> Value {
        self.value_view().to_value()
    }

    fn expiry_at(&self) -> usize {
        let mut position = VARINT_AT;
        get_varint(&self.blob, &mut position);
        position
    }

    /// Absolute expiry in Unix milliseconds, if any.
    pub fn expire_at(&self) -> Option<u64> {
        if self.flags() & HAS_EXPIRY == 0 {
            return None;
        }
        Some(read_u64(&self.blob, self.expiry_at()))
    }

    /// Whether the entry is expired at `now` (Unix ms).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expire_at().is_some_and(|at| at <= now)
    }

    /// The version stamp, if the write carried one.
    pub fn stamp(&self) -> Option<Stamp> {
        if self.flags() & HAS_STAMP == 0 {
            return None;
        }
        let mut at = self.expiry_at();
        if self.flags() & HAS_EXPIRY != 0 {
            at += 8;
        }
        let mut origin = [0u8; 4];
        origin.copy_from_slice(&self.blob[at + 8..at + 12]);
        Some(Stamp {
            hlc: read_u64(&self.blob, at),
            origin: u32::from_le_bytes(origin),
        })
    }

    /// Last access time (Unix seconds, truncated to u32) for LRU eviction.
    pub fn lru(&self) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.blob[LRU_AT..LRU_AT + 4]);
        u32::from_le_bytes(bytes)
    }

    /// Records an access.
    pub fn touch(&mut self, lru: u32) {
        self.blob[LRU_AT..LRU_AT + 4].copy_from_slice(&lru.to_le_bytes());
    }

    /// The same entry with another expiry; rewritten in place when the presence does not change.
    pub fn with_expiry(mut self, expire_at: Option<u64>) -> Entry {
        match (self.expire_at(), expire_at) {
            (Some(_), Some(at)) => {
                let position = self.expiry_at();
                self.blob[position..position + 8].copy_from_slice(&at.to_le_bytes());
                self
            }
            (None, None) => self,
            _ => Entry::new(
                self.key(),
                self.kind(),
                self.payload(),
                expire_at,
                self.stamp(),
                self.lru(),
            ),
        }
    }

    /// The hash's fields, empty for a string.
    pub fn hash_fields(&self) -> HashIter<'_> {
        let data = match self.kind() {
            Kind::Hash => self.payload(),
            Kind::String => &[],
        };
        HashIter::new(data)
    }

    /// One hash field's value.
    pub fn hash_get(&self, field: &[u8]) -> Option<&[u8]> {
        self.hash_fields()
            .find(|(name, _)| *name == field)
            .map(|(_, value)| value)
    }

    /// The hash's fields as owned pairs.
    pub fn hash_pairs(&self) -> Vec<(Bytes, Bytes)> {
        self.hash_fields()
            .map(|(field, value)| (Bytes::copy_from_slice(field), Bytes::copy_from_slice(value)))
            .collect()
    }

    /// Heap bytes held by the blob.
    pub fn blob_len(&self) -> usize {
        self.blob.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let stamp = Stamp { hlc: 77, origin: 3 };
        let entry = Entry::new(b"key", Kind::String, b"value", Some(1234), Some(stamp), 9);
        assert_eq!(entry.key(), b"key");
        assert_eq!(entry.payload(), b"value");
        assert_eq!(entry.expire_at(), Some(1234));
        assert_eq!(entry.stamp(), Some(stamp));
        assert_eq!(entry.lru(), 9);
        assert!(entry.is_expired(1234));
        assert!(!entry.is_expired(1233));
        let entry = entry.with_expiry(Some(99));
        assert_eq!(entry.expire_at(), Some(99));
        let entry = entry.with_expiry(None);
        assert_eq!(entry.expire_at(), None);
        assert_eq!(entry.key(), b"key");
        assert_eq!(entry.payload(), b"value");
        assert_eq!(entry.stamp(), Some(stamp));
    }

    #[test]
    fn small_string_is_one_small_allocation() {
        let entry = Entry::new(b"key:000000001", Kind::String, b"xxx", None, None, 0);
        assert_eq!(entry.blob_len(), 5 + 1 + 13 + 3);
        let long_key = vec![b'k'; 300];
        let entry = Entry::new(&long_key, Kind::String, b"v", Some(5), None, 0);
        assert_eq!(entry.key(), &long_key[..]);
        assert_eq!(entry.payload(), b"v");
    }

    #[test]
    fn hash_payload() {
        use crate::store::value::encode_hash;
        let payload = encode_hash([(&b"a"[..], &b"1"[..]), (&b"bb"[..], &b""[..])]);
        let entry = Entry::new(b"h", Kind::Hash, &payload, None, None, 0);
        assert_eq!(entry.kind(), Kind::Hash);
        assert_eq!(entry.hash_get(b"a"), Some(&b"1"[..]));
        assert_eq!(entry.hash_get(b"bb"), Some(&b""[..]));
        assert_eq!(entry.hash_get(b"c"), None);
        assert_eq!(entry.hash_fields().count(), 2);
    }

    #[test]
    fn tombstone_round_trips() {
        let stamp = Stamp { hlc: 9, origin: 4 };
        let entry = Entry::tombstone(b"gone", stamp, 1_234, 0);
        assert!(entry.is_tombstone());
        assert_eq!(entry.key(), b"gone");
        assert_eq!(entry.stamp(), Some(stamp));
        assert_eq!(entry.deleted_at(), Some(1_234));
        assert_eq!(entry.expire_at(), None);
        assert!(!entry.is_live(0));
        let live = Entry::new(b"k", Kind::String, b"v", None, Some(stamp), 0);
        assert!(!live.is_tombstone());
        assert_eq!(live.deleted_at(), None);
    }
}
