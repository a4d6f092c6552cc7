//! Tombstone collection: a periodic task drops tombstones older than the collection cutoff,
//! which waits for every member peer to have completed an anti-entropy round that started a
//! grace period after the delete, so that no peer can bring a deleted key back afterwards.
//!
//! Under memory pressure (this node's memory alarm, or a connected peer's) the grace shrinks
//! to [`PRESSURE_GRACE`] and the task runs every second: every eviction leaves a
//! tombstone, and a fill that evicts thousands of keys a second would otherwise fill the
//! node with an hour of tombstones, which eviction cannot free (docs/memory.md). The proof
//! that no member can send the old value back is the same, a completed round with every
//! member after the delete; only a node that was not a member then is no longer covered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::metrics::ReplicationMetrics;
use super::shared::{under_memory_pressure, wall_ms, Shared};

/// The grace under memory pressure: a deletion's stamp is at most this far ahead of the wall
/// clock that timed a round's start (stamps follow cluster time, which the nodes' clock
/// correction keeps within milliseconds of each other on a healthy network).
const PRESSURE_GRACE: Duration = Duration::from_secs(1);

/// How often the collector looks for memory pressure (and collects while there is some).
const PRESSURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The tombstone collection cutoff: older than `grace`, and older by `grace` than the start of
/// the last completed anti-entropy round with every member peer (a member never synced
/// blocks collection). `now` minus `grace` when there are no members.
fn collection_cutoff(shared: &Shared, grace: Duration) -> u64 {
    let now = wall_ms(shared);
    let grace = grace.as_millis() as u64;
    let peers = shared.peers.lock();
    let horizon = peers
        .by_address
        .values()
        .filter(|entry| !entry.left)
        .map(|entry| entry.last_round_started_ms.unwrap_or(0))
        .min()
        .unwrap_or(now);
    horizon.min(now).saturating_sub(grace)
}

/// The grace a tombstone is kept beyond the last completed round with every member: the
/// configured grace, or under memory pressure [`PRESSURE_GRACE`].
fn grace(shared: &Shared, pressure: bool) -> Duration {
    if pressure {
        PRESSURE_GRACE
    } else {
        shared.config.tombstone_grace
    }
}

/// Collects tombstones below the cutoff every `tombstone_gc_interval`, and every second while
/// under memory pressure, until shutdown.
pub(crate) async fn tombstone_collector(shared: Arc<Shared>) {
    let mut tick =
        tokio::time::interval(PRESSURE_CHECK_INTERVAL.min(shared.config.tombstone_gc_interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let pressure = under_memory_pressure(&shared);
                let due = last.is_none_or(|at| at.elapsed() >= shared.config.tombstone_gc_interval);
                if !pressure && !due {
                    continue;
                }
                last = Some(Instant::now());
                let cutoff = collection_cutoff(&shared, grace(&shared, pressure));
                if cutoff > 0 {
                    let replica = shared.replica.clone();
                    // A pass visits every key under its shard's lock: off the runtime's threads.
                    let collected = tokio::task::spawn_blocking(move || replica.collect_tombstones(cutoff))
                        .await
                        .unwrap_or(0);
                    if collected > 0 {
                        debug!(collected, cutoff, pressure, "tombstones collected");
                        ReplicationMetrics::add(&shared.metrics.tombstones_collected, collected as u64);
                    }
                }
            }
        }
    }
}
