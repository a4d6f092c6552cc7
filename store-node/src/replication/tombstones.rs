//! Tombstone collection: a periodic task drops tombstones older than the collection cutoff,
//! which waits for every member peer to have completed an anti-entropy round that started a
//! grace period after the delete, so that no peer can bring a deleted key back afterwards.

use std::sync::Arc;

use tracing::debug;

use super::metrics::ReplicationMetrics;
use super::shared::{wall_ms, Shared};

/// The tombstone collection cutoff: older than the grace period, and older by the grace period
/// than the start of the last completed anti-entropy round with every member peer (a member
/// never synced blocks collection). `now` when there are no members.
fn collection_cutoff(shared: &Shared) -> u64 {
    let now = wall_ms(shared);
    let grace = shared.config.tombstone_grace.as_millis() as u64;
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

/// Collects tombstones below the cutoff every `tombstone_gc_interval` until shutdown.
pub(crate) async fn tombstone_collector(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.tombstone_gc_interval);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let cutoff = collection_cutoff(&shared);
                if cutoff > 0 {
                    let collected = shared.replica.collect_tombstones(cutoff);
                    if collected > 0 {
                        debug!(collected, cutoff, "tombstones collected");
                        ReplicationMetrics::add(&shared.metrics.tombstones_collected, collected as u64);
                    }
                }
            }
        }
    }
}
