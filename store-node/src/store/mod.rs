//! The keyspace engine, a leaf: it depends on nothing else in store-node. Every mutation is an
//! [`Op`] applied through one write path ([`MemoryEngine`]); what a write means beyond this
//! node (replicating it, logging it) is the business of the [`WriteHook`] installed in the
//! engine, implemented outside this module (`crate::node`), and what the client must wait for
//! comes back from the write as a [`WriteReceipt`]. The value model ([`value`]), each key's
//! mergeable state ([`state`]: per-field, per-member, per-element stamps and their merge
//! rules), the replicated unit ([`Record`]), its byte encoding ([`codec`]) and the
//! anti-entropy digests ([`digest`]) live here because the engine stores, merges and digests
//! them.

pub mod codec;
pub mod digest;
pub mod engine;
pub mod entry;
pub mod glob;
pub mod hook;
pub mod op;
pub mod record;
pub mod stamp;
pub mod state;
pub mod table;
pub mod value;

pub use engine::{
    memory_reserve, EngineConfig, EvictionPolicy, KeyAccess, KeysAccess, MemoryEngine,
    MemoryStatus, StoreStats, Watch, VALUE_COST_FACTOR,
};
pub use entry::Entry;
pub use hook::{MergedChange, Versioning, WriteHook, WriteReceipt};
pub use op::Op;
pub use record::{Record, RecordView, Touch};
pub use stamp::Stamp;
pub use value::{Kind, Value};

/// Milliseconds added to the system clock by [`unix_ms`]: 0 except in the clock-skew tests,
/// which run a node whose clock is off (`--test-clock-offset-ms`).
static TEST_CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// TEST ONLY: shifts this process's clock ([`unix_ms`]) by `offset_ms`, as a machine whose
/// clock is off would be: expiry, stamps and every other use of the time see it.
pub fn set_test_clock_offset(offset_ms: i64) {
    TEST_CLOCK_OFFSET_MS.store(offset_ms, std::sync::atomic::Ordering::Relaxed);
}

/// The current time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    system.saturating_add_signed(TEST_CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}
