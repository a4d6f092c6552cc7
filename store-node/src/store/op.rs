//! Mutations as values. Commands resolve relative times (EX, KEEPTTL, INCRBY, APPEND) into
//! absolute, self-contained operations, so an op replays to the same state on another node or
//! from a log.

use bytes::Bytes;

use super::value::Value;

/// One mutation of the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Replace the key with `value` and the given absolute expiry (Unix ms; `None` = persistent).
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Value,
        /// Absolute expiry.
        expire_at: Option<u64>,
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
            | Op::SetExpiry { key, .. }
            | Op::Delete { key } => Some(key),
            Op::FlushAll => None,
        }
    }
}
