//! The compact in-memory layout of one key: a single heap allocation holding a small header,
//! the key and the encoded state, so a small session costs one allocation plus a table node.
//!
//! Layout: `flags u8 | lru u32 | key_len varint | [expire_at u64] | [hlc u64, origin u32] | key |
//! payload`, little-endian. The flags, expiry and stamp are the state's [`Header`] (type,
//! absent, plain, has-deletions; the greatest stamp); the payload is the state's compact
//! encoding (`super::state::encode`), per-element stamps included, so memory accounting
//! (the blob's size) counts the merge metadata without anything else to track. A plain
//! string's payload is the string itself.

use std::borrow::Cow;

use bytes::Bytes;

use super::record::RecordView;
use super::stamp::Stamp;
use super::state::encode::{encoded_expiry_stamp, encoded_hash, plain_hash};
use super::state::{decode, view, DecodeError, Header, State};
use super::value::{get_varint, put_varint, varint_len, Kind};

const HAS_EXPIRY: u8 = 1 << 3;
const HAS_STAMP: u8 = 1 << 4;
const ABSENT: u8 = 1 << 5;
const PLAIN: u8 = 1 << 6;
const HAS_DEAD: u8 = 1 << 7;
const LRU_AT: usize = 1;
const VARINT_AT: usize = 5;

/// One stored key with its state, optional expiry and optional stamp.
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

fn read_u32(data: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// Whether `flags` names a value kind (a stored entry's always does; `Entry::header` reads
/// one that does not as absent and plain).
fn kind_valid(flags: u8) -> bool {
    Kind::from_tag(flags & 0b111).is_some()
}

impl Entry {
    /// Builds an entry from a state's header and payload.
    pub fn new(key: &[u8], header: &Header, payload: &[u8], lru: u32) -> Entry {
        let mut len = VARINT_AT + varint_len(key.len() as u64) + key.len() + payload.len();
        if header.expire_at.is_some() {
            len += 8;
        }
        if header.stamp.is_some() {
            len += 12;
        }
        let mut blob = Vec::with_capacity(len);
        blob.push(header.flags());
        blob.extend_from_slice(&lru.to_le_bytes());
        put_varint(&mut blob, key.len() as u64);
        if let Some(at) = header.expire_at {
            blob.extend_from_slice(&at.to_le_bytes());
        }
        if let Some(stamp) = header.stamp {
            blob.extend_from_slice(&stamp.hlc.to_le_bytes());
            blob.extend_from_slice(&stamp.origin.to_le_bytes());
        }
        blob.extend_from_slice(key);
        blob.extend_from_slice(payload);
        Entry {
            blob: blob.into_boxed_slice(),
        }
    }

    /// The entry storing a record.
    pub fn of_record(record: &RecordView<'_>, lru: u32) -> Entry {
        Entry::new(record.key, &record.header, record.payload, lru)
    }

    fn flags(&self) -> u8 {
        self.blob[0]
    }

    /// The state's header.
    pub fn header(&self) -> Header {
        // One pass over the fixed part: every read and write of the key asks for it, several
        // times per command.
        let flags = self.flags();
        let mut at = self.expiry_at();
        let mut expire_at = None;
        if flags & HAS_EXPIRY != 0 {
            expire_at = Some(read_u64(&self.blob, at));
            at += 8;
        }
        let stamp = (flags & HAS_STAMP != 0).then(|| Stamp {
            hlc: read_u64(&self.blob, at),
            origin: read_u32(&self.blob, at + 8),
        });
        // The flags were written from a valid header by this process.
        Header::from_flags(flags, expire_at, stamp).unwrap_or(Header {
            kind: Kind::String,
            expire_at,
            stamp,
            absent: true,
            plain: true,
            has_dead: false,
        })
    }

    /// Whether the key shows nothing (every part deleted): kept so the deletions win over
    /// older writes; absent to every read.
    pub fn is_tombstone(&self) -> bool {
        // From the flags alone, as `header` reads them (an unknown kind reads as absent):
        // every read and write asks, and the full header costs a varint read.
        let flags = self.flags();
        flags & ABSENT != 0 || !kind_valid(flags)
    }

    /// Whether the payload is plain, as `header` reads it (an unknown kind reads as plain).
    fn is_plain(&self) -> bool {
        let flags = self.flags();
        flags & PLAIN != 0 || flags & HAS_STAMP == 0 || !kind_valid(flags)
    }

    /// Whether the state holds deletions tombstone collection must one day drop.
    pub fn has_dead(&self) -> bool {
        let flags = self.flags();
        flags & HAS_DEAD != 0 && kind_valid(flags)
    }

    /// Whether the entry is a live (not expired, not deleted) value at `now` (Unix ms).
    pub fn is_live(&self, now: u64) -> bool {
        !self.is_tombstone() && !self.is_expired(now)
    }

    /// Moves an existing expiry to `expire_at` in place (a touch); false when the entry has
    /// no expiry to move.
    pub fn set_expiry_in_place(&mut self, expire_at: u64) -> bool {
        if self.flags() & HAS_EXPIRY == 0 {
            return false;
        }
        let position = self.expiry_at();
        self.blob[position..position + 8].copy_from_slice(&expire_at.to_le_bytes());
        true
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

    /// The encoded state.
    pub fn payload(&self) -> &[u8] {
        let (at, len) = self.key_span();
        &self.blob[at + len..]
    }

    /// The value's type.
    pub fn kind(&self) -> Kind {
        Kind::from_tag(self.flags() & 0b111).unwrap_or(Kind::String)
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

    /// The greatest stamp in the state, if writes are stamped.
    pub fn stamp(&self) -> Option<Stamp> {
        if self.flags() & HAS_STAMP == 0 {
            return None;
        }
        let mut at = self.expiry_at();
        if self.flags() & HAS_EXPIRY != 0 {
            at += 8;
        }
        Some(Stamp {
            hlc: read_u64(&self.blob, at),
            origin: read_u32(&self.blob, at + 8),
        })
    }

    /// The state's version for anti-entropy (its state hash), if writes are stamped.
    pub fn version(&self) -> Option<u64> {
        // A plain state's hash is its stamp's: neither the header nor the payload is needed
        // (every write replaces a version, so this runs twice per SET).
        let stamp = self.stamp()?;
        if self.is_plain() {
            return Some(plain_hash(stamp, self.is_tombstone()));
        }
        encoded_hash(&self.header(), self.payload())
    }

    /// The stamp of the expiry register (what a touch refers to), if writes are stamped.
    pub fn expiry_stamp(&self) -> Option<Stamp> {
        encoded_expiry_stamp(&self.header(), self.payload())
    }

    /// The decoded state.
    pub fn state(&self) -> Result<State, DecodeError> {
        decode(&self.header(), self.payload())
    }

    /// The entry as a record, borrowed.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            key: self.key(),
            header: self.header(),
            payload: self.payload(),
            replaces: false,
        }
    }

    /// When the deletions of a key that shows nothing happened (the latest), for tombstone
    /// collection; `None` while it shows a value.
    pub fn deleted_at(&self) -> Option<u64> {
        let header = self.header();
        if !header.absent {
            return None;
        }
        if header.plain {
            let payload = self.payload();
            return (payload.len() == 8).then(|| read_u64(payload, 0));
        }
        self.state().ok()?.deleted_at()
    }

    /// The string a string entry shows: a plain string's bytes borrowed, a counter's sum.
    pub fn string(&self) -> Option<Cow<'_, [u8]>> {
        if self.kind() != Kind::String || self.is_tombstone() {
            return None;
        }
        if self.is_plain() {
            return Some(Cow::Borrowed(self.payload()));
        }
        view::string_value(&self.state().ok()?).map(|value| Cow::Owned(value.to_vec()))
    }

    /// One live field of a hash entry.
    pub fn hash_field(&self, field: &[u8]) -> Option<Bytes> {
        if self.kind() != Kind::Hash {
            return None;
        }
        view::hash_field(&self.state().ok()?, field)
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

    /// Heap bytes held by the blob.
    pub fn blob_len(&self) -> usize {
        self.blob.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::Record;
    use crate::store::value::Value;

    #[test]
    fn layout_round_trips() {
        let stamp = Stamp { hlc: 77, origin: 3 };
        let record = Record::live(
            Bytes::from_static(b"key"),
            stamp,
            Value::String(Bytes::from_static(b"value")),
            Some(1234),
        );
        let mut entry = Entry::of_record(&record.view(), 9);
        assert_eq!(entry.key(), b"key");
        assert_eq!(entry.payload(), b"value");
        assert_eq!(entry.expire_at(), Some(1234));
        assert_eq!(entry.stamp(), Some(stamp));
        assert_eq!(entry.expiry_stamp(), Some(stamp));
        assert_eq!(entry.lru(), 9);
        assert!(entry.is_expired(1234));
        assert!(!entry.is_expired(1233));
        assert!(entry.set_expiry_in_place(99));
        assert_eq!(entry.expire_at(), Some(99));
        assert_eq!(entry.view().to_record().payload, record.payload);
        assert_eq!(entry.string().as_deref(), Some(&b"value"[..]));
    }

    #[test]
    fn small_string_is_one_small_allocation() {
        let header = Header {
            kind: Kind::String,
            expire_at: None,
            stamp: None,
            absent: false,
            plain: true,
            has_dead: false,
        };
        let entry = Entry::new(b"key:000000001", &header, b"xxx", 0);
        assert_eq!(entry.blob_len(), 5 + 1 + 13 + 3);
        // A replicated SET costs its stamp and nothing else.
        let record = Record::live(
            Bytes::from_static(b"key:000000001"),
            Stamp { hlc: 1, origin: 2 },
            Value::String(Bytes::from_static(b"xxx")),
            None,
        );
        assert_eq!(
            Entry::of_record(&record.view(), 0).blob_len(),
            5 + 1 + 12 + 13 + 3
        );
    }

    #[test]
    fn flag_reads_agree_with_the_header_for_every_flags_byte() {
        for flags in 0..=u8::MAX {
            let mut blob = vec![flags, 0, 0, 0, 0, 3];
            if flags & HAS_EXPIRY != 0 {
                blob.extend_from_slice(&55u64.to_le_bytes());
            }
            if flags & HAS_STAMP != 0 {
                blob.extend_from_slice(&77u64.to_le_bytes());
                blob.extend_from_slice(&3u32.to_le_bytes());
            }
            blob.extend_from_slice(b"key");
            blob.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
            let entry = Entry {
                blob: blob.into_boxed_slice(),
            };
            let header = entry.header();
            assert_eq!(entry.is_tombstone(), header.absent, "flags {flags:#010b}");
            assert_eq!(entry.has_dead(), header.has_dead, "flags {flags:#010b}");
            assert_eq!(entry.is_plain(), header.plain, "flags {flags:#010b}");
            assert_eq!(
                entry.version(),
                encoded_hash(&header, entry.payload()),
                "flags {flags:#010b}"
            );
        }
    }

    #[test]
    fn tombstone_round_trips() {
        let stamp = Stamp { hlc: 9, origin: 4 };
        let record = Record::tombstone(Bytes::from_static(b"gone"), stamp, 1_234);
        let entry = Entry::of_record(&record.view(), 0);
        assert!(entry.is_tombstone());
        assert_eq!(entry.key(), b"gone");
        assert_eq!(entry.stamp(), Some(stamp));
        assert_eq!(entry.deleted_at(), Some(1_234));
        assert_eq!(entry.expire_at(), None);
        assert!(!entry.is_live(0));
        assert_eq!(entry.string(), None);
    }
}
