//! Waiting for a record to be durable, and under `fsync=everysec` leading its write: the
//! appender waiting for its record takes the log lock itself ([`lead`]), writes whatever is
//! queued (its own record and every other appender's) with one `write`, and publishes right
//! after it. A busy log lock is never waited for on the thread: the appender's task awaits the
//! holder's progress (at most [`LEAD_RETRY`]) and tries again, and after [`LEAD_BUSY_WAIT`]
//! leaves its record to the writer thread.
//!
//! Handing each record to the writer thread instead would cost a thread wake-up per record and
//! a task wake-up per waiter: on two cores, about half the throughput of RAM mode
//! (docs/persistence.md). Under `fsync=always` the writer thread writes and fdatasyncs every
//! batch, and waiters only watch [`Progress`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::fault::WriterFault;
use super::queue::{join_frames, Channel, Item, Stop};
use super::Shared;
use crate::config::Fsync;
use crate::persistence::error::PersistenceError;

/// How long an appender that found the log lock busy waits for the holder's progress before
/// trying to lead again: a leader publishes as soon as its `write` returned, but a holder that
/// wrote nothing publishes nothing (1 ms, the runtime timer's resolution).
const LEAD_RETRY: Duration = Duration::from_millis(1);

/// How long an appender keeps trying to lead while the log lock stays busy before leaving its
/// record to the writer thread: longer than a few writes means a rotation or a descheduled
/// holder.
const LEAD_BUSY_WAIT: Duration = Duration::from_millis(5);

impl Shared {
    /// Waits until record `seq` may be acknowledged (see
    /// [`crate::persistence::Persistence::wait_durable`]): under `everysec` it first tries to
    /// write the queued records itself, on its own thread ([`lead`]), one `write` of a few KiB
    /// at most.
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), PersistenceError> {
        let channel = &self.channel;
        if channel.acked_seq() >= seq {
            return Ok(());
        }
        if channel.fsync == Fsync::Everysec {
            // Group commit across connections, like Redis's one AOF `write` per event-loop
            // iteration: the other connections ready on this thread apply their writes first,
            // and whoever leads then writes them all at once (the others find theirs written).
            tokio::task::yield_now().await;
            if channel.acked_seq() >= seq {
                return Ok(());
            }
        }
        let mut progress = channel.progress.subscribe();
        let give_up = tokio::time::Instant::now() + LEAD_BUSY_WAIT;
        loop {
            match lead(self, seq) {
                Some(true) => return Ok(()),
                Some(false) => break,
                None if tokio::time::Instant::now() >= give_up => {
                    channel.kick();
                    break;
                }
                None => {
                    // Another thread holds the log (a leader writing, often with this record):
                    // wait for its progress on this task, the runtime thread free meanwhile,
                    // instead of spinning and parking the thread on the lock.
                    let _ = tokio::time::timeout(LEAD_RETRY, progress.changed()).await;
                    let current = progress.borrow_and_update();
                    if current.acked >= seq {
                        return Ok(());
                    }
                    if current.failed.is_some() || current.stopped {
                        break;
                    }
                }
            }
        }
        let state = progress
            .wait_for(|state| state.acked >= seq || state.failed.is_some() || state.stopped)
            .await
            .map_err(|_| PersistenceError::Stopped)?;
        if state.acked >= seq {
            return Ok(());
        }
        match &state.failed {
            Some(reason) => Err(PersistenceError::Unavailable {
                reason: reason.to_string(),
            }),
            None => Err(PersistenceError::Stopped),
        }
    }
}

/// Concatenates taken frames into one batch: (bytes, last sequence, record count); the
/// emptied buffers go back to the queue.
fn concat(channel: &Channel, items: Vec<Item>) -> (Vec<u8>, u64, u64) {
    let mut batch: Vec<u8> = Vec::new();
    let mut used = Vec::new();
    let mut last_seq = 0;
    let mut records = 0;
    for item in items {
        if let Item::Frames {
            bytes,
            last_seq: seq,
            records: count,
        } = item
        {
            join_frames(&mut batch, bytes, &mut used);
            last_seq = seq;
            records += count;
        }
    }
    channel.recycle(used);
    (batch, last_seq, records)
}

/// Under `everysec`, called by an appender waiting for record `seq`: writes everything queued on
/// the calling thread (group commit led by the waiter) and says whether `seq` may now be
/// acknowledged. `Some(false)` leaves it to the writer thread (another mode, a failing or faulty
/// log, a rotation queued first, a stop): the caller then waits for
/// [`Progress`](super::queue::Progress). `None`: the log lock is busy (a leader writing, the writer
/// thread syncing or rotating); it is never waited for here: spinning and parking a runtime thread
/// on it makes everysec slower than fsync=always on pipelined writes (`sched_yield` is then 16.5 %
/// of the runtime threads' context switches), so the caller awaits the holder's progress and tries
/// again.
fn lead(shared: &Shared, seq: u64) -> Option<bool> {
    let channel = &shared.channel;
    if channel.fsync != Fsync::Everysec
        || channel.fault.get() != WriterFault::None
        || channel.metrics.failing.load(Ordering::Relaxed) != 0
    {
        return Some(false);
    }
    let mut log = shared.log.try_lock()?;
    if log.written_seq >= seq && !log.failing {
        return Some(true);
    }
    if log.failing || channel.fault.get() != WriterFault::None {
        drop(log);
        channel.kick();
        return Some(false);
    }
    if channel.queue.lock().stop != Stop::No {
        return Some(false);
    }
    let (batch, last_seq, records) = concat(channel, channel.take(true));
    if batch.is_empty() {
        // A rotation is queued before the record: the writer thread takes both in order.
        drop(log);
        channel.kick();
        return Some(false);
    }
    let was_synced = !log.dirty();
    let was_below = log.unsynced_bytes() < channel.sync_bytes;
    log.push(channel, batch, last_seq, records);
    match log.write_pending(channel) {
        Ok(()) => {
            let done = log.written_seq >= seq;
            let sync_due = was_below && log.unsynced_bytes() >= channel.sync_bytes;
            drop(log);
            if was_synced || !done || sync_due {
                // A sync is due within a second of this first unsynced write, and at once
                // when the unsynced bytes reach `sync_bytes`.
                channel.kick();
            }
            Some(done)
        }
        Err((step, error)) => {
            log.fail(channel, step, error);
            drop(log);
            channel.kick();
            Some(false)
        }
    }
}
