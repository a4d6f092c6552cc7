//! The writer thread (`wal-writer`). Under `fsync=always` it writes every queued batch and
//! fdatasyncs it before publishing it as acknowledged; appenders arriving during the fdatasync
//! form the next batch (group commit). Under `fsync=everysec` appenders write their own
//! records ([`super::leader`]) and the thread fdatasyncs at most a second after the first
//! unsynced write, or at once when `sync_bytes` (4 MiB) are written and unsynced, without
//! holding the log lock (appenders keep writing meanwhile); every [`FLUSH_TICK`] it writes
//! records nobody waits for (applied from peers). The early sync bounds the copy of the
//! unsynced bytes the log keeps for a rewrite after an error.
//!
//! It alone takes rotations from the queue and retries a failing log, every
//! [`SYNC_PERIOD`] with the log lock released, until the rewrite succeeds or a stop is asked
//! for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::queue::{join_frames, Channel, Item, Stop};
use super::segment::{write_and_sync, Log, SYNC_PERIOD};
use super::Shared;
use crate::config::Fsync;

/// Under `everysec`, how long a queued record nobody leads to the file (a record applied from
/// a peer) may wait for the writer thread.
const FLUSH_TICK: Duration = Duration::from_millis(10);

/// The writer thread.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// Whether the log held unsynced bytes after the last round, and when a sync is due.
    dirty: bool,
    sync_due: Instant,
}

impl Writer {
    /// The writer thread's state over `shared`; [`Writer::run`] is the thread body.
    pub(crate) fn new(shared: Arc<Shared>) -> Writer {
        Writer {
            shared,
            dirty: false,
            sync_due: Instant::now(),
        }
    }

    /// The thread body.
    pub(crate) fn run(mut self) {
        let shared = self.shared.clone();
        let channel = &shared.channel;
        loop {
            let stop = self.wait_for_work();
            if stop == Stop::Abort {
                return;
            }
            channel.fault.wait_while_stalled();
            let mut log = shared.log.lock();
            let mut batch: Vec<u8> = Vec::new();
            let mut used = Vec::new();
            let mut last_seq = 0;
            let mut records = 0;
            for item in channel.take(false) {
                match item {
                    Item::Frames {
                        bytes,
                        last_seq: seq,
                        records: count,
                    } => {
                        join_frames(&mut batch, bytes, &mut used);
                        last_seq = seq;
                        records += count;
                    }
                    Item::Rotate { reply } => {
                        let taken = std::mem::take(&mut batch);
                        // Synced under the lock: nothing may reach the next segment before
                        // this one is whole on disc.
                        if !persist(channel, &mut log, taken, last_seq, records, true, false) {
                            return;
                        }
                        records = 0;
                        // The receiver may have given up; nothing to do then.
                        let _ = reply.send(log.rotate(channel));
                    }
                }
            }
            channel.recycle(std::mem::take(&mut used));
            let sync_now = match channel.fsync {
                Fsync::Always => true,
                Fsync::Everysec => log.everysec_sync_due(channel, batch.len() as u64),
            };
            if !persist(channel, &mut log, batch, last_seq, records, sync_now, true) {
                return;
            }
            if stop == Stop::Clean {
                let empty = channel.queue.lock().items.is_empty();
                if empty {
                    persist(channel, &mut log, Vec::new(), 0, 0, true, false);
                    return;
                }
            }
            self.dirty = log.dirty();
            // Leaders wrote `sync_bytes` more during an unlocked sync: sync again at once.
            self.sync_due = if channel.fsync == Fsync::Everysec && log.everysec_sync_due(channel, 0)
            {
                Instant::now()
            } else {
                log.last_sync + SYNC_PERIOD
            };
        }
    }

    /// Blocks until there is work: items (`always`), a kick, a tick with something queued
    /// or written (`everysec`), a sync due, or a stop request.
    fn wait_for_work(&mut self) -> Stop {
        let channel = &self.shared.channel;
        let mut queue = channel.queue.lock();
        let mut tick = Instant::now() + FLUSH_TICK;
        loop {
            if queue.stop != Stop::No {
                return queue.stop;
            }
            if queue.kicked {
                queue.kicked = false;
                return Stop::No;
            }
            let now = Instant::now();
            if self.dirty && now >= self.sync_due {
                return Stop::No;
            }
            match channel.fsync {
                Fsync::Always => {
                    if !queue.items.is_empty() {
                        return Stop::No;
                    }
                    if self.dirty {
                        channel.wake.wait_until(&mut queue, self.sync_due);
                    } else {
                        channel.wake.wait(&mut queue);
                    }
                }
                Fsync::Everysec => {
                    if self.dirty || !queue.items.is_empty() {
                        if now >= tick {
                            if queue.items.is_empty() {
                                tick = now + FLUSH_TICK;
                            } else {
                                return Stop::No;
                            }
                        }
                        let until = if self.dirty {
                            tick.min(self.sync_due)
                        } else {
                            tick
                        };
                        channel.wake.wait_until(&mut queue, until);
                    } else {
                        queue.parked = true;
                        channel.wake.wait(&mut queue);
                        queue.parked = false;
                        // Woken by an append: give its appender a tick to lead it.
                        tick = Instant::now() + FLUSH_TICK;
                    }
                }
            }
        }
    }
}

/// Pushes `batch` and writes (and syncs when asked) the log, retrying every second through
/// failures with the log lock released. Returns false when a stop was requested while failing.
fn persist(
    channel: &Channel,
    log: &mut MutexGuard<'_, Log>,
    batch: Vec<u8>,
    last_seq: u64,
    records: u64,
    sync_now: bool,
    unlocked: bool,
) -> bool {
    log.push(channel, batch, last_seq, records);
    // A leading appender's failure is retried here; the retry must prove the bytes reached
    // the disc.
    let mut sync_now = sync_now || log.failing;
    loop {
        match write_and_sync(channel, log, sync_now, unlocked && !log.failing) {
            Ok(()) => {
                if log.failing {
                    log.set_failed(channel, None);
                }
                return true;
            }
            Err((step, error)) => {
                log.fail(channel, step, error);
                sync_now = true;
                let stopped = MutexGuard::unlocked(log, || {
                    let mut queue = channel.queue.lock();
                    if queue.stop == Stop::No {
                        channel.wake.wait_for(&mut queue, SYNC_PERIOD);
                    }
                    queue.stop != Stop::No
                });
                if stopped {
                    return false;
                }
            }
        }
    }
}
