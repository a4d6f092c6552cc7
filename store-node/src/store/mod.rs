//! The keyspace engine: synchronous, sharded, with one write path. Every mutation is an
//! [`Op`] value with absolute times, applied by [`MemoryEngine`] and then handed to an optional
//! [`OpSink`] (replication and the write-ahead log plug in there in later issues).

pub mod entry;
pub mod glob;
pub mod memory;
pub mod op;
pub mod table;

pub use entry::{Entry, Kind, Stamp};
pub use memory::{
    take_logged, take_submitted_seq, EngineConfig, KeyAccess, MemoryEngine, MemoryStatus,
    StoreStats,
};
pub use op::{Op, OpSink, Value};

/// The current time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}
