//! The replicated unit: a [`Record`] is one key's mergeable state (`super::state`) in its
//! compact encoding, the whole state (anti-entropy, snapshots, bootstrap) or the delta of one
//! local write (the op-log, the write-ahead log), and [`merge`] is the rule every node applies
//! to a record it receives. Both kinds merge by the same join, so a node holding every delta
//! of a key holds its whole state. A [`Touch`] extends the expiry of one exact expiry
//! register. The write-ahead log and snapshots store records too, so recovery is the same
//! merge.

use bytes::Bytes;

use super::op::Op;
use super::stamp::Stamp;
use super::state::apply::{apply, Keep};
use super::state::encode::{encoded_hash, Header};
use super::state::model::{Body, Cell, Expiry, Register, State};
use super::state::{decode, encode, DecodeError};
use super::value::Value;

/// One key's state (or the delta of one write), encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Bytes,
    /// Type, expiry, greatest stamp and flags.
    pub header: Header,
    /// The encoded state.
    pub payload: Bytes,
    /// A whole value of the previous format (recovered from an older data directory): it
    /// replaces older states of the key entirely, as that format's last-writer-wins did.
    pub replaces: bool,
}

impl Record {
    /// The record of a key's state (versioned: stamps kept).
    pub fn from_state(key: impl Into<Bytes>, state: &State) -> Record {
        let (header, payload) = encode(state, true);
        Record {
            key: key.into(),
            header,
            payload: Bytes::from(payload),
            replaces: false,
        }
    }

    /// The record of a whole value written by one write stamped `stamp`: every register,
    /// member and element carries that stamp (what a record of the previous format becomes).
    pub fn live(
        key: impl Into<Bytes>,
        stamp: Stamp,
        value: Value,
        expire_at: Option<u64>,
    ) -> Record {
        let key = key.into();
        let op = Op::Put {
            key: key.clone(),
            value,
            expire_at,
            keep_ttl: false,
        };
        let state = apply(&op, None, stamp, 0, Keep::Deletions)
            .state
            .unwrap_or_else(|| State::empty(super::value::Kind::String));
        Record::from_state(key, &state)
    }

    /// A deleted string key: deleted at `deleted_at_ms` by the write stamped `stamp`.
    pub fn tombstone(key: impl Into<Bytes>, stamp: Stamp, deleted_at_ms: u64) -> Record {
        let state = State {
            expiry: Expiry { at: None, stamp },
            body: Body::String(Cell::of(Register::dead(stamp, deleted_at_ms))),
        };
        Record::from_state(key, &state)
    }

    /// A record that changes nothing anywhere (an empty state with the zero stamp): stands in
    /// for one that cannot be sent, keeping a batch's sequence contiguous.
    pub fn placeholder(key: impl Into<Bytes>) -> Record {
        Record::from_state(key, &State::empty(super::value::Kind::String))
    }

    /// The greatest stamp in the record.
    pub fn stamp(&self) -> Stamp {
        self.header.stamp.unwrap_or(Stamp::ZERO)
    }

    /// Whether the key shows nothing (every part deleted).
    pub fn is_tombstone(&self) -> bool {
        self.header.absent
    }

    /// The key's absolute expiry (Unix ms).
    pub fn expire_at(&self) -> Option<u64> {
        self.header.expire_at
    }

    /// When a key that shows nothing was deleted (its latest deletion); `None` while it shows
    /// a value.
    pub fn deleted_at(&self) -> Option<u64> {
        if !self.header.absent {
            return None;
        }
        if self.header.plain {
            let bytes: [u8; 8] = self.payload[..].try_into().ok()?;
            return Some(u64::from_le_bytes(bytes));
        }
        self.state().ok()?.deleted_at()
    }

    /// The decoded state.
    pub fn state(&self) -> Result<State, DecodeError> {
        decode(&self.header, &self.payload)
    }

    /// Approximate encoded size in bytes (for log and batch limits).
    pub fn size(&self) -> usize {
        self.view().size()
    }

    /// The record's fields, borrowed.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            key: &self.key,
            header: self.header,
            payload: &self.payload,
            replaces: self.replaces,
        }
    }
}

/// A record's fields borrowed from where they live (a [`Record`], a stored entry), so the
/// write-ahead log and snapshots encode a stored entry straight into their buffers. Building
/// a [`Record`] first copied every logged value into fresh allocations that another thread
/// freed, and the allocator kept faulting in new zeroed pages for them (a fifth of the RESP
/// thread's CPU in disc mode).
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Type, expiry, greatest stamp and flags.
    pub header: Header,
    /// The encoded state.
    pub payload: &'a [u8],
    /// See [`Record::replaces`].
    pub replaces: bool,
}

impl RecordView<'_> {
    /// Approximate encoded size in bytes (for log and batch limits).
    pub fn size(&self) -> usize {
        self.key.len() + 4 + 1 + 8 + 12 + 4 + self.payload.len()
    }

    /// The greatest stamp in the record.
    pub fn stamp(&self) -> Stamp {
        self.header.stamp.unwrap_or(Stamp::ZERO)
    }

    /// The state's version for anti-entropy (its state hash).
    pub fn version(&self) -> u64 {
        encoded_hash(&self.header, self.payload).unwrap_or(0)
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            key: Bytes::copy_from_slice(self.key),
            header: self.header,
            payload: Bytes::copy_from_slice(self.payload),
            replaces: self.replaces,
        }
    }
}

/// Whether a record is a plain string (a value or a deletion, one stamp for everything).
fn plain_string(header: &Header) -> bool {
    header.plain && header.stamp.is_some() && header.kind == super::value::Kind::String
}

/// The merge rule: what a node stores for `incoming` given its stored state (`None` =
/// unchanged): [`super::state::merge`] over the decoded states, identical on every node, so
/// every node converges to the same state whatever the delivery order. A stored state that
/// cannot be decoded (it never can: this node encoded it) is replaced.
pub fn merge(
    stored: Option<&RecordView<'_>>,
    incoming: &RecordView<'_>,
    now_ms: u64,
    forget_before_ms: u64,
) -> Result<Option<Record>, DecodeError> {
    if let Some(stored) = stored {
        // Two plain strings: last writer wins on the one stamp both carry, as strings always
        // did; no decoding, no copy for the common replicated SET.
        if plain_string(&stored.header)
            && plain_string(&incoming.header)
            && stored.stamp() > incoming.stamp()
        {
            return Ok(None);
        }
    }
    let theirs = decode(&incoming.header, incoming.payload)?;
    let mine = stored.and_then(|stored| decode(&stored.header, stored.payload).ok());
    let merged = super::state::merge(
        mine.as_ref(),
        &theirs,
        incoming.replaces,
        now_ms,
        forget_before_ms,
    );
    Ok(merged.map(|state| Record::from_state(Bytes::copy_from_slice(incoming.key), &state)))
}

/// Extends the expiry of one version of a key: applies only where the key's expiry register
/// still has the stamp `value_stamp`, and only ever moves the expiry later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The key.
    pub key: Bytes,
    /// The stamp of the expiry register being touched.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn live(hlc: u64, value: &str, expire_at: Option<u64>) -> Record {
        Record::live(
            Bytes::from_static(b"k"),
            Stamp { hlc, origin: 1 },
            Value::String(Bytes::copy_from_slice(value.as_bytes())),
            expire_at,
        )
    }

    #[test]
    fn strings_are_last_writer_wins_with_the_later_expiry_on_equal_stamps() {
        let (old, new) = (live(5, "a", None), live(6, "b", None));
        assert_eq!(merge(Some(&new.view()), &old.view(), 0, 0), Ok(None));
        assert_eq!(
            merge(Some(&old.view()), &new.view(), 0, 0),
            Ok(Some(new.clone()))
        );
        let (short, long) = (live(5, "a", Some(1_000)), live(5, "a", Some(2_000)));
        assert_eq!(
            merge(Some(&short.view()), &long.view(), 0, 0),
            Ok(Some(long.clone()))
        );
        assert_eq!(merge(Some(&long.view()), &short.view(), 0, 0), Ok(None));
        let gone = Record::tombstone(Bytes::from_static(b"k"), Stamp { hlc: 7, origin: 1 }, 50);
        assert!(gone.is_tombstone());
        assert_eq!(
            merge(Some(&new.view()), &gone.view(), 0, 0),
            Ok(Some(gone.clone()))
        );
        // An old deletion of an absent key was collected here already.
        assert_eq!(merge(None, &gone.view(), 0, 60), Ok(None));
        // A value that arrives expired is ignored where the key is absent.
        assert_eq!(merge(None, &short.view(), 1_000, 0), Ok(None));
    }

    #[test]
    fn a_plain_record_carries_no_metadata() {
        let record = live(5, "value", Some(9));
        assert!(record.header.plain);
        assert_eq!(&record.payload[..], b"value");
    }
}
