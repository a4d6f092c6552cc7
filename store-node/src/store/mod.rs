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

/// The current time in Unix milliseconds (0 before the epoch).
pub fn unix_ms() -> u64 {
    // Read straight from `clock_gettime(CLOCK_REALTIME)`, which is what `SystemTime::now`
    // reads: every command asks, and `SystemTime`'s checked subtraction from the epoch costs
    // about 40 instructions more than this arithmetic.
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and the clock
    // id is a constant every supported kernel knows.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let system = match (result, u64::try_from(now.tv_sec)) {
        (0, Ok(seconds)) => seconds
            .saturating_mul(1_000)
            .saturating_add(now.tv_nsec as u64 / 1_000_000),
        _ => 0,
    };
    system.saturating_add_signed(TEST_CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}
