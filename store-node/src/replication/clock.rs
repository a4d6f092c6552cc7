//! Time for stamps. A hybrid logical clock: `physical milliseconds << 16 | logical counter`.
//! Stamps from [`HybridClock::now`] strictly increase on a node even when the wall clock steps
//! backwards, [`HybridClock::now_after`] puts a local write above the stamp it replaces (so a
//! write that follows another on any node wins last-writer-wins whatever the clocks say), and
//! [`HybridClock::observe`] keeps stamps above every stamp seen from peers.
//!
//! The physical part is *cluster time*: the wall clock corrected by the peers' clocks as
//! measured from heartbeats ([`ClockSamples`], NTP's exchange of four timestamps with three of
//! them known). When the majority of the clocks a node sees (its own included) disagree with
//! its own by more than [`CORRECTION_THRESHOLD_MS`], it stamps by theirs ([`cluster_offset`]:
//! the lower median of the offsets), so a node whose clock runs a minute ahead or behind still
//! orders its writes with the others' as in real time. Stamps further ahead of cluster time
//! than the drift bound are refused by receivers ([`HybridClock::beyond_bound`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// A node whose clock is further than this from the majority's stamps by the majority's time
/// (and is reported `ClockSkew` by the operator at the same threshold). Well above what NTP
/// keeps between machines (milliseconds) and than the error of a measurement over a link of
/// a few hundred milliseconds.
pub const CORRECTION_THRESHOLD_MS: u64 = sessionstore_api::constants::CLOCK_SKEW_THRESHOLD_MS;

/// Samples of a peer's clock kept: the estimate is the one with the shortest round trip among
/// them (its error is at most half its round trip), so a heartbeat delayed behind bulk traffic
/// does not move it.
const SAMPLES: usize = 4;

/// Round trips longer than this make a sample too imprecise to use.
const MAX_SAMPLE_RTT_MS: u64 = 10_000;

/// A source of wall-clock time in Unix milliseconds (injectable for tests).
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system wall clock (with the node's test offset, see `crate::store::unix_ms`).
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
    /// Added to the wall clock to get cluster time (see the module documentation).
    correction_ms: AtomicI64,
    /// Whether a correction was ever computed from peer measurements: before that, this node
    /// knows nothing of the others' clocks and refuses no remote stamp.
    estimated: AtomicBool,
}

impl std::fmt::Debug for HybridClock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HybridClock")
            .field("last", &self.last.load(Ordering::Relaxed))
            .field("correction_ms", &self.correction_ms.load(Ordering::Relaxed))
            .finish()
    }
}

impl HybridClock {
    /// A clock over `wall`; remote stamps more than `max_drift_ms` ahead of cluster time are
    /// not adopted (a peer with a broken clock must not drag every node into the future).
    pub fn new(wall: WallClock, max_drift_ms: u64) -> HybridClock {
        HybridClock {
            last: AtomicU64::new(0),
            wall,
            max_drift_ms,
            correction_ms: AtomicI64::new(0),
            estimated: AtomicBool::new(false),
        }
    }

    /// The wall clock in Unix ms, uncorrected (what heartbeats carry, so that measurements
    /// never feed back into themselves).
    pub fn wall_ms(&self) -> u64 {
        (self.wall)()
    }

    /// Cluster time in Unix ms: the wall clock plus the correction.
    pub fn cluster_ms(&self) -> u64 {
        let correction = self.correction_ms.load(Ordering::Relaxed);
        self.wall_ms().saturating_add_signed(correction)
    }

    /// The correction in force (ms added to the wall clock).
    pub fn correction_ms(&self) -> i64 {
        self.correction_ms.load(Ordering::Relaxed)
    }

    /// Sets the correction from a new estimate of the peers' clocks ([`cluster_offset`]).
    pub fn set_correction(&self, correction_ms: i64) {
        let previous = self.correction_ms.swap(correction_ms, Ordering::Relaxed);
        let first = !self.estimated.swap(true, Ordering::Relaxed);
        if previous != correction_ms || first {
            if correction_ms == 0 {
                tracing::info!("clock agrees with the peers' majority; stamping by the wall clock");
            } else {
                tracing::warn!(
                    correction_ms,
                    "clock disagrees with the peers' majority; stamping by their time (fix the node's clock: NTP)"
                );
            }
        }
    }

    /// Whether a correction was computed from peer measurements yet.
    pub fn estimated(&self) -> bool {
        self.estimated.load(Ordering::Relaxed)
    }

    /// A new stamp for a local write, greater than every stamp issued or observed before.
    pub fn now(&self) -> u64 {
        self.now_after(0)
    }

    /// A new stamp for a local write that replaces a version stamped `replaced`: greater than
    /// `replaced` and than every stamp issued or observed before. A replaced stamp beyond the
    /// drift bound is no floor: it could only come from a node whose clock jumped ahead, and
    /// the local write takes its place here with a sane stamp instead of inheriting it.
    pub fn now_after(&self, replaced: u64) -> u64 {
        let cluster = self.cluster_ms();
        let physical = cluster << LOGICAL_BITS;
        let floor = if physical_ms(replaced) > cluster.saturating_add(self.max_drift_ms) {
            0
        } else {
            replaced.saturating_add(1)
        };
        let mut current = self.last.load(Ordering::Acquire);
        loop {
            // A logical overflow carries into the physical part: still monotonic.
            let next = physical.max(current.saturating_add(1)).max(floor);
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

    /// Whether a remote stamp is further ahead of cluster time than the drift bound, once this
    /// node has measured its peers' clocks (before, it cannot tell whose clock is wrong).
    pub fn beyond_bound(&self, remote: u64) -> bool {
        self.estimated()
            && physical_ms(remote) > self.cluster_ms().saturating_add(self.max_drift_ms)
    }

    /// Takes a remote stamp into account; false (and no effect) when it is further ahead of
    /// cluster time than the allowed drift.
    pub fn observe(&self, remote: u64) -> bool {
        let limit = self.cluster_ms().saturating_add(self.max_drift_ms) << LOGICAL_BITS;
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

/// The recent measurements of one peer's clock against this node's wall clock.
#[derive(Debug, Clone, Default)]
pub struct ClockSamples {
    /// (peer clock minus this node's, round trip), oldest first.
    samples: VecDeque<(i64, u64)>,
}

impl ClockSamples {
    /// Adds the measurement of one heartbeat exchange: this node sent at `sent_ms`, the peer's
    /// clock read `peer_ms` when it answered, the answer arrived at `received_ms` (this node's
    /// wall clock both times). The peer's offset is `peer_ms` minus the midpoint, exact when
    /// both directions take as long, off by at most half the round trip otherwise. Returns
    /// false for a sample that cannot be trusted (a clock that stepped meanwhile, a round trip
    /// of more than 10 s).
    pub fn add(&mut self, sent_ms: u64, peer_ms: u64, received_ms: u64) -> bool {
        let Some(rtt) = received_ms.checked_sub(sent_ms) else {
            return false;
        };
        if rtt > MAX_SAMPLE_RTT_MS {
            return false;
        }
        let midpoint = i128::from(sent_ms) + i128::from(rtt / 2);
        let offset =
            (i128::from(peer_ms) - midpoint).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((offset as i64, rtt));
        true
    }

    /// The peer's clock minus this node's, in ms: the sample with the shortest round trip.
    pub fn offset_ms(&self) -> Option<i64> {
        self.samples
            .iter()
            .min_by_key(|(_, rtt)| *rtt)
            .map(|(offset, _)| *offset)
    }
}

/// The correction of a node's clock from its peers' offsets (each peer's clock minus this
/// node's): the lower median of the offsets with this node's own (0) among them, or 0 when
/// that is within [`CORRECTION_THRESHOLD_MS`]. With a majority of clocks in agreement every
/// node lands on their time; with no majority (two clocks, or an even split) every node takes
/// the earlier of the middle ones, so the nodes still agree and cluster time never runs ahead
/// of the majority's: a stamp in the future is what the drift bound refuses, a stamp in the
/// past only loses to later writes.
pub fn cluster_offset(peer_offsets: &[i64]) -> i64 {
    let mut offsets: Vec<i64> = Vec::with_capacity(peer_offsets.len() + 1);
    offsets.push(0);
    offsets.extend_from_slice(peer_offsets);
    offsets.sort_unstable();
    let median = offsets[(offsets.len() - 1) / 2];
    if median.unsigned_abs() > CORRECTION_THRESHOLD_MS {
        median
    } else {
        0
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
    fn a_local_write_is_stamped_above_the_stamp_it_replaces_whatever_the_wall_clock() {
        // This node's clock is a minute behind the writer of the replaced version.
        let (_time, wall) = manual(1_000_000);
        let clock = HybridClock::new(wall, 10_000);
        let replaced = (1_009_000 << 16) + 5;
        assert_eq!(clock.now_after(replaced), replaced + 1);
        // And the clock moved past it: later writes of other keys stay above it too.
        assert_eq!(clock.now(), replaced + 2);
    }

    #[test]
    fn a_replaced_stamp_beyond_the_drift_bound_is_no_floor() {
        let (_time, wall) = manual(1_000_000);
        let clock = HybridClock::new(wall, 10_000);
        let poisoned = 1_060_000 << 16;
        assert_eq!(clock.now_after(poisoned), 1_000_000 << 16);
        assert_eq!(clock.last(), 1_000_000 << 16);
    }

    #[test]
    fn the_correction_moves_stamps_to_cluster_time() {
        let (_time, wall) = manual(1_060_000);
        let clock = HybridClock::new(wall, 10_000);
        assert!(!clock.estimated());
        clock.set_correction(-60_000);
        assert!(clock.estimated());
        assert_eq!(clock.cluster_ms(), 1_000_000);
        assert_eq!(clock.wall_ms(), 1_060_000);
        assert_eq!(physical_ms(clock.now()), 1_000_000);
    }

    #[test]
    fn stamps_beyond_the_bound_are_refused_only_once_peers_were_measured() {
        let (_time, wall) = manual(1_000_000);
        let clock = HybridClock::new(wall, 10_000);
        let ahead = 1_010_001 << 16;
        assert!(
            !clock.beyond_bound(ahead),
            "no measurement yet: nothing is refused"
        );
        clock.set_correction(0);
        assert!(clock.beyond_bound(ahead));
        assert!(!clock.beyond_bound(1_010_000 << 16));
        // Behind a node that is a minute behind, records of the others are not refused.
        clock.set_correction(60_000);
        assert!(!clock.beyond_bound(1_060_000 << 16));
    }

    #[test]
    fn a_peer_offset_is_measured_from_the_midpoint_of_the_exchange() {
        let mut samples = ClockSamples::default();
        assert_eq!(samples.offset_ms(), None);
        // Sent at 1000, answered at peer time 61050, back at 1100: the peer is 60000 ahead.
        assert!(samples.add(1_000, 61_050, 1_100));
        assert_eq!(samples.offset_ms(), Some(60_000));
        // A slower exchange (answer delayed behind bulk traffic) does not move the estimate.
        assert!(samples.add(2_000, 63_900, 4_000));
        assert_eq!(samples.offset_ms(), Some(60_000));
        // A clock that stepped back meanwhile, or a round trip over 10 s: not a sample.
        assert!(!samples.add(5_000, 1, 4_999));
        assert!(!samples.add(5_000, 1, 15_001));
        // Only the last four samples count.
        for sent in [10_000, 11_000, 12_000, 13_000] {
            assert!(samples.add(sent, sent - 500 + 10, sent + 20));
        }
        assert_eq!(samples.offset_ms(), Some(-500));
    }

    #[test]
    fn the_majority_clock_wins_and_an_even_split_takes_the_earlier() {
        // Three nodes, one a minute ahead: it corrects, the others do not.
        assert_eq!(cluster_offset(&[-60_000, -60_000]), -60_000);
        assert_eq!(cluster_offset(&[60_000, 0]), 0);
        // One a minute behind: it corrects, the others do not.
        assert_eq!(cluster_offset(&[60_000, 60_000]), 60_000);
        assert_eq!(cluster_offset(&[-60_000, 0]), 0);
        // Two clocks: both take the earlier one, so they still agree.
        assert_eq!(cluster_offset(&[-60_000]), -60_000);
        assert_eq!(cluster_offset(&[60_000]), 0);
        // Within the threshold, nothing changes; no peer measured, nothing either.
        assert_eq!(cluster_offset(&[400, 450]), 0);
        assert_eq!(cluster_offset(&[]), 0);
        // Four clocks split two and two: every node takes the earlier pair's time.
        assert_eq!(cluster_offset(&[0, 60_000, 60_000]), 0);
        assert_eq!(cluster_offset(&[-60_000, -60_000, 0]), -60_000);
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
