//! Sliding-expiry touches on their way to the op-log: pending touches are coalesced per key
//! (the latest version and expiry win), dropped when a newer write of the key supersedes them,
//! and moved into the log by a periodic flusher, or at once when the node leaves or asks.
//! Coalescing keeps a key read in a tight loop from sending one touch per read.

use std::sync::Arc;

use super::oplog::LogItem;
use super::shared::Shared;
use crate::store::state::encode::encoded_expiry_stamp;
use crate::store::{Record, Touch};

/// Drops the pending touch of `record`'s key when `record` carries a newer expiry register:
/// the touch would be ignored everywhere anyway. (A record carrying the touched register
/// carries its touched expiry too, so the touch is not needed either.)
pub(crate) fn drop_superseded(shared: &Shared, record: &Record) {
    let mut pending = shared.pending_touches.lock();
    let Some(touch) = pending.get(&record.key) else {
        return;
    };
    let expiry = encoded_expiry_stamp(&record.header, &record.payload);
    if expiry.is_some_and(|stamp| stamp > touch.value_stamp)
        || (expiry == Some(touch.value_stamp) && record.expire_at() >= Some(touch.expire_at))
    {
        pending.remove(&record.key);
    }
}

/// Queues `touch`, keeping per key the one of the newest version, then the latest expiry.
pub(crate) fn coalesce(shared: &Shared, touch: Touch) {
    let mut pending = shared.pending_touches.lock();
    match pending.get_mut(&touch.key) {
        Some(existing) if existing.value_stamp > touch.value_stamp => {}
        Some(existing)
            if existing.value_stamp == touch.value_stamp
                && existing.expire_at >= touch.expire_at => {}
        Some(existing) => *existing = touch,
        None => {
            pending.insert(touch.key.clone(), touch);
        }
    }
}

/// Moves every pending touch into the log.
pub(crate) fn flush_touches(shared: &Shared) {
    let touches: Vec<Touch> = shared
        .pending_touches
        .lock()
        .drain()
        .map(|(_, touch)| touch)
        .collect();
    for touch in touches {
        shared.log.append(LogItem::Touch(touch));
    }
}

/// Flushes pending touches every `touch_flush_interval` until shutdown.
pub(crate) async fn touch_flusher(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.touch_flush_interval);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => flush_touches(&shared),
        }
    }
}
