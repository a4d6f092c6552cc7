//! The replicated unit: a [`Record`] is the whole state of one key after a write (a live value
//! with its absolute expiry, or a tombstone), stamped for last-writer-wins, and [`merge`], the
//! rule every node applies to a record it receives; a [`Touch`] extends the expiry of one exact
//! version. The write-ahead log and snapshots store records too, so recovery is the same merge.

use bytes::Bytes;

use super::stamp::Stamp;
use super::value::{Value, ValueView};

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
                    value: value.view(),
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
                Record::live(key, self.stamp, value.to_value(), *expire_at)
            }
        }
    }
}

/// The merge rule: what a node stores for `incoming` given its stored version (`None` =
/// unchanged). Identical on every node, so every node converges to the same state whatever
/// the delivery order:
/// - A record whose stamp is greater than the stored one (or whose key is absent) replaces the
///   key, with two exceptions: a live record already expired at `now_ms` becomes a tombstone
///   with its stamp if the key was present (so an older, longer-lived version elsewhere cannot
///   come back) and is ignored if absent; a tombstone older than `forget_before_ms` is ignored if
///   the key is absent (it was collected here already).
/// - A record with the stored stamp merges the expiry: the later one wins (`None`, persistent,
///   is the latest). This also repairs lost touches.
/// - A record with a smaller stamp changes nothing.
pub fn merge(
    stored: Option<&Record>,
    incoming: &Record,
    now_ms: u64,
    forget_before_ms: u64,
) -> Option<Record> {
    match stored {
        Some(stored) if stored.stamp == incoming.stamp => match (&stored.state, &incoming.state) {
            (
                RecordState::Live {
                    value,
                    expire_at: Some(mine),
                },
                RecordState::Live {
                    expire_at: theirs, ..
                },
            ) if theirs.is_none_or(|theirs| theirs > *mine) => Some(Record {
                key: stored.key.clone(),
                stamp: stored.stamp,
                state: RecordState::Live {
                    value: value.clone(),
                    expire_at: *theirs,
                },
            }),
            _ => None,
        },
        Some(stored) if stored.stamp > incoming.stamp => None,
        _ => {
            let present = stored.is_some();
            match &incoming.state {
                RecordState::Live {
                    expire_at: Some(at),
                    ..
                } if *at <= now_ms => {
                    present.then(|| Record::tombstone(incoming.key.clone(), incoming.stamp, *at))
                }
                RecordState::Tombstone { deleted_at_ms }
                    if !present && *deleted_at_ms < forget_before_ms =>
                {
                    None
                }
                _ => Some(incoming.clone()),
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
