//! A hybrid logical clock: `physical milliseconds << 16 | logical counter`. Stamps from
//! [`HybridClock::now`] strictly increase on a node even when the wall clock steps backwards,
//! and [`HybridClock::observe`] keeps them above every stamp seen from peers, so a write that
//! causally follows another always wins last-writer-wins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// A source of wall-clock time in Unix milliseconds (injectable for tests).
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system wall clock.
pub fn system_wall_clock() -> WallClock {
    Arc::new(crate::store::unix_ms)
}

/// The physical part (Unix ms) of an HLC value.
pub fn physical_ms(hlc: u64) -> u64 {
    hlc >> LOGICAL_BITS
}

/// A hybrid logical clock shared by every writer on a node.
pub struct HybridClock {
    last: AtomicU64,
    wall: WallClock,
    max_drift_ms: u64,
}

impl std::fmt::Debug for HybridClock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HybridClock")
            .field("last", &self.last.load(Ordering::Relaxed))
            .finish()
    }
}

impl HybridClock {
    /// A clock over `wall`; remote stamps more than `max_drift_ms` ahead of the local wall clock
    /// are not adopted (a peer with a broken clock must not drag every node into the future).
    pub fn new(wall: WallClock, max_drift_ms: u64) -> HybridClock {
        HybridClock {
            last: AtomicU64::new(0),
            wall,
            max_drift_ms,
        }
    }

    /// The wall clock in Unix ms.
    pub fn wall_ms(&self) -> u64 {
        (self.wall)()
    }

    /// A new stamp for a local write, greater than every stamp issued or observed before.
    pub fn now(&self) -> u64 {
        let physical = self.wall_ms() << LOGICAL_BITS;
        let mut current = self.last.load(Ordering::Acquire);
        loop {
            // A logical overflow carries into the physical part: still monotonic.
            let next = physical.max(current.saturating_add(1));
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a remote stamp into account; false (and no effect) when it is further ahead of
    /// the local wall clock than the allowed drift.
    pub fn observe(&self, remote: u64) -> bool {
        let limit = self.wall_ms().saturating_add(self.max_drift_ms) << LOGICAL_BITS;
        if remote > limit {
            return false;
        }
        self.last.fetch_max(remote, Ordering::AcqRel);
        true
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual(start: u64) -> (Arc<AtomicU64>, WallClock) {
        let time = Arc::new(AtomicU64::new(start));
        let source = time.clone();
        (time, Arc::new(move || source.load(Ordering::SeqCst)))
    }

    #[test]
    fn stamps_follow_the_wall_clock_and_count_within_a_millisecond() {
        let (time, wall) = manual(1_000);
        let clock = HybridClock::new(wall, 60_000);
        assert_eq!(clock.now(), 1_000 << 16);
        assert_eq!(clock.now(), (1_000 << 16) + 1);
        time.store(1_001, Ordering::SeqCst);
        assert_eq!(clock.now(), 1_001 << 16);
        assert_eq!(physical_ms(clock.now()), 1_001);
    }

    #[test]
    fn monotonic_when_the_wall_clock_steps_back() {
        let (time, wall) = manual(5_000);
        let clock = HybridClock::new(wall, 60_000);
        let before = clock.now();
        time.store(4_000, Ordering::SeqCst);
        let after = clock.now();
        assert_eq!(after, before + 1);
        assert_eq!(physical_ms(after), 5_000);
    }

    #[test]
    fn observed_remote_stamps_are_exceeded() {
        let (_time, wall) = manual(1_000);
        let clock = HybridClock::new(wall, 60_000);
        let remote = (2_000 << 16) + 7;
        assert!(clock.observe(remote));
        assert_eq!(clock.now(), remote + 1);
        // An older remote stamp does not move the clock back.
        assert!(clock.observe(5));
        assert_eq!(clock.now(), remote + 2);
    }

    #[test]
    fn stamps_too_far_ahead_are_not_adopted() {
        let (_time, wall) = manual(1_000);
        let clock = HybridClock::new(wall, 500);
        assert!(!clock.observe(1_501 << 16));
        assert_eq!(clock.now(), 1_000 << 16);
        assert!(clock.observe(1_500 << 16));
        assert_eq!(clock.now(), (1_500 << 16) + 1);
    }

    #[test]
    fn concurrent_writers_never_share_a_stamp() {
        let clock = Arc::new(HybridClock::new(system_wall_clock(), 60_000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| clock.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(count, 40_000);
        assert_eq!(all.len(), 40_000);
    }
}
