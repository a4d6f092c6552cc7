//! Mutations as values. Commands resolve relative times (EX, KEEPTTL, INCRBY, APPEND) into
//! absolute, self-contained operations, so an op replays to the same state on another node or
//! from a log.

use std::sync::Arc;

use bytes::Bytes;

use super::entry::Stamp;

/// A whole value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    String(Bytes),
    /// A hash, as field/value pairs.
    Hash(Vec<(Bytes, Bytes)>),
}

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

/// Receives every applied op, in per-key order, while the key's shard is still locked.
/// Replication and the write-ahead log implement this; it must not block for long.
pub trait OpSink: Send + Sync + 'static {
    /// Called after `op` was applied locally.
    fn record(&self, op: &Op, stamp: Option<Stamp>);
}

/// A sink that keeps every op in memory (tests).
#[derive(Debug, Default)]
pub struct RecordingSink {
    ops: parking_lot::Mutex<Vec<Op>>,
}

impl RecordingSink {
    /// A new, empty sink.
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    /// The ops recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }
}

impl OpSink for RecordingSink {
    fn record(&self, op: &Op, _stamp: Option<Stamp>) {
        self.ops.lock().push(op.clone());
    }
}
