//! Mutations as values. Commands resolve relative inputs (EX, KEEPTTL, list indexes, the
//! result of an increment) into self-contained operations while they hold the key's shard
//! lock; the write path applies one with the write's stamp to the key's state
//! (`super::state::apply`), which says what changed for replication and the log.

use bytes::Bytes;

use super::value::Value;

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The head (`LPUSH`, `LPOP`).
    Left,
    /// The tail (`RPUSH`, `RPOP`).
    Right,
}

/// One mutation of the keyspace.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Replace the key with `value` and the given absolute expiry (Unix ms; `None` = persistent),
    /// or, with `keep_ttl`, the expiry register the key has (`SET KEEPTTL`, `APPEND`).
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Value,
        /// Absolute expiry.
        expire_at: Option<u64>,
        /// Leave the key's expiry register as it is (when the key is live).
        keep_ttl: bool,
    },
    /// Set hash fields; creates a persistent hash when the key is absent, keeps the expiry
    /// otherwise.
    HashSet {
        /// The key.
        key: Bytes,
        /// Fields to set.
        fields: Vec<(Bytes, Bytes)>,
    },
    /// Delete hash fields; the key goes when the last field does.
    HashDelete {
        /// The key.
        key: Bytes,
        /// Fields to delete.
        fields: Vec<Bytes>,
    },
    /// Add `by` to a counter: the string `key` (`field` absent) or a hash field. `result` is
    /// the value the command computed (what one node in RAM stores); `by` is what this node's
    /// contribution grows by.
    Increment {
        /// The key.
        key: Bytes,
        /// The hash field, for `HINCRBY`/`HINCRBYFLOAT`.
        field: Option<Bytes>,
        /// The increment, as a number's text.
        by: Bytes,
        /// The counter's value after the increment, as text.
        result: Bytes,
    },
    /// Add set members (creates the set).
    SetAdd {
        /// The key.
        key: Bytes,
        /// Members.
        members: Vec<Bytes>,
    },
    /// Remove set members; the key goes when the last member does.
    SetRemove {
        /// The key.
        key: Bytes,
        /// Members.
        members: Vec<Bytes>,
    },
    /// Set the scores of sorted-set members (creates the set).
    ZAdd {
        /// The key.
        key: Bytes,
        /// Members and their scores.
        members: Vec<(Bytes, f64)>,
    },
    /// Add `by` to a member's score; `result` is the score the command computed.
    ZIncrement {
        /// The key.
        key: Bytes,
        /// The member.
        member: Bytes,
        /// The increment.
        by: f64,
        /// The score after it.
        result: f64,
    },
    /// Remove sorted-set members.
    ZRemove {
        /// The key.
        key: Bytes,
        /// Members.
        members: Vec<Bytes>,
    },
    /// Push values at one end of a list, one after the other (`LPUSH a b` leaves `b a`).
    ListPush {
        /// The key.
        key: Bytes,
        /// Which end.
        end: End,
        /// Values, in the order pushed.
        values: Vec<Bytes>,
    },
    /// Insert values before the element at `index` of the list as it is now (`index` = the
    /// length: after the last).
    ListInsert {
        /// The key.
        key: Bytes,
        /// Where.
        index: usize,
        /// Values, in order.
        values: Vec<Bytes>,
    },
    /// Replace the value of the element at `index`.
    ListSet {
        /// The key.
        key: Bytes,
        /// Which element.
        index: usize,
        /// The new value.
        value: Bytes,
    },
    /// Remove the elements at `indexes` of the list as it is now.
    ListRemove {
        /// The key.
        key: Bytes,
        /// Which elements (any order, duplicates ignored).
        indexes: Vec<usize>,
    },
    /// Change the absolute expiry of an existing key (`None` = persist).
    SetExpiry {
        /// The key.
        key: Bytes,
        /// New absolute expiry.
        expire_at: Option<u64>,
    },
    /// Delete the key.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Delete every key.
    FlushAll,
}

impl Op {
    /// The key this op changes (`None` for [`Op::FlushAll`]).
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Op::Put { key, .. }
            | Op::HashSet { key, .. }
            | Op::HashDelete { key, .. }
            | Op::Increment { key, .. }
            | Op::SetAdd { key, .. }
            | Op::SetRemove { key, .. }
            | Op::ZAdd { key, .. }
            | Op::ZIncrement { key, .. }
            | Op::ZRemove { key, .. }
            | Op::ListPush { key, .. }
            | Op::ListInsert { key, .. }
            | Op::ListSet { key, .. }
            | Op::ListRemove { key, .. }
            | Op::SetExpiry { key, .. }
            | Op::Delete { key } => Some(key),
            Op::FlushAll => None,
        }
    }
}
