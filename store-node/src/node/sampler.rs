//! The memory tick, every `--memory-sample-interval-ms` (100 ms): samples the footprint into
//! the engine ([`super::memory`]), exchanges the alarm with the peers (replication's heartbeat
//! carries it), and under an evicting policy evicts in the background while the node is in
//! alarm, since replicated writes arrive without a growth command to evict for them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::memory::purge_freed_pages;
use super::state::NodeState;
use crate::store::EvictionPolicy;

/// Calls of the engine's eviction per tick while the node is in alarm under an evicting
/// policy (each evicts up to 256 keys toward the low watermark).
const BACKGROUND_EVICTION_ROUNDS: usize = 8;

/// One tick: samples the footprint into the engine, exchanges the alarm with the peers, and
/// evicts in the background while in alarm under an evicting policy.
pub fn sample_once(state: &NodeState) {
    let engine = &state.engine;
    if state.memory.samples_footprint() {
        purge_freed_pages();
        let checkpoint = engine.footprint_checkpoint();
        let readings = state.memory.read();
        engine.set_footprint_sample(readings.footprint(), checkpoint);
    }
    if let Some(replication) = state.replication() {
        replication.set_memory_alarm(engine.memory().alarm);
        engine.set_peer_alarm(!replication.peers_in_memory_alarm().is_empty());
    }
    let memory = engine.memory();
    if memory.alarm && memory.policy != EvictionPolicy::Noeviction {
        for _ in 0..BACKGROUND_EVICTION_ROUNDS {
            if !engine.make_room() || !engine.memory().alarm {
                break;
            }
        }
    }
}

/// Samples every interval until `shutdown`.
pub async fn memory_loop(state: Arc<NodeState>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(state.memory.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => sample_once(&state),
        }
    }
}
