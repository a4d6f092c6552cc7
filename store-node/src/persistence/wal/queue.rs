//! The append side of the log: the bounded queue of encoded batches that appenders fill and
//! writers take, with its back-pressure, its failure and stop flags, and the reuse of written
//! batches' buffers; and the [`Channel`] around it, where appenders, leaders, the writer thread
//! and waiters meet (the queue, its condition variables, the published [`Progress`]).
//!
//! A record is encoded straight into the last queued batch, under the queue lock, and gets the
//! next sequence number; taking moves whole batches out in order. Admission of a local write
//! happens before the write takes any lock or changes anything, so a refused write has no
//! effect; a full queue is waited for before that, asynchronously ([`Channel::wait_for_room`]),
//! so it slows writers without stalling their thread, readers of the keys they write, or
//! anything else that thread serves.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::{watch, Notify};

use super::fault::{FaultSwitch, WriterFault};
use crate::config::Fsync;
use crate::persistence::error::PersistenceError;
use crate::persistence::format::{self, WireError};
use crate::persistence::metrics::PersistenceMetrics;
use crate::store::RecordView;

/// Initial capacity of a new queued batch; most batches reuse the buffer of a written one.
const NEW_BATCH_CAPACITY: usize = 16 << 10;

/// Capacity [`Queue::spare`] may hold in all. Batch buffers come back as soon as they are
/// written (the log keeps its own copy of the unsynced bytes), so a few are in use at a time.
const SPARE_LIMIT_BYTES: usize = 8 << 20;

/// What the writer is asked to do.
pub(super) enum Item {
    /// Encoded frames of consecutive sequences ending at `last_seq`.
    Frames {
        bytes: Vec<u8>,
        last_seq: u64,
        records: u64,
    },
    /// Sync the current segment and start the next; the reply carries its sequence.
    Rotate {
        reply: SyncSender<Result<u64, String>>,
    },
}

/// How the writer should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Keep running.
    No,
    /// Write and sync everything queued, then exit.
    Clean,
    /// Exit at once, dropping the queue (a simulated crash).
    Abort,
}

/// The queue shared by appenders and the writer.
pub(super) struct Queue {
    /// Batches and rotations, in sequence order.
    pub(super) items: VecDeque<Item>,
    /// The sequence the next record gets.
    pub(super) next_seq: u64,
    /// Encoded bytes in `items`, against the queue limit.
    pub(super) queued_bytes: usize,
    /// The log is failing with this error: local writes are refused.
    pub(super) failed: Option<String>,
    /// Whether and how the writer thread is to stop.
    pub(super) stop: Stop,
    /// The writer thread waits with nothing to do and no deadline (`everysec`): the next
    /// append wakes it.
    pub(super) parked: bool,
    /// The writer thread should look at the log now: a leading appender wrote into a synced
    /// log (a sync is now due within a second), failed, or left its record to the writer.
    pub(super) kicked: bool,
    /// Emptied buffers of written batches, reused for the next queued frames (see
    /// [`Queue::recycle`]).
    spare: Vec<Vec<u8>>,
    /// Capacity held in `spare`.
    spare_bytes: usize,
}

impl Queue {
    /// An empty queue whose first record gets sequence 1.
    pub(super) fn new() -> Queue {
        Queue {
            items: VecDeque::new(),
            next_seq: 1,
            queued_bytes: 0,
            failed: None,
            stop: Stop::No,
            parked: false,
            kicked: false,
            spare: Vec::new(),
            spare_bytes: 0,
        }
    }

    /// A buffer for new queued frames: a spare one when there is one.
    fn buffer(&mut self) -> Option<Vec<u8>> {
        let buffer = self.spare.pop()?;
        self.spare_bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps the buffers of written batches for reuse (up to [`SPARE_LIMIT_BYTES`]). Freed,
    /// the allocator returns their pages to the kernel, and the next batches fault in and zero
    /// fresh (transparent huge) pages: under everysec on pipelined writes that is 14 % of the
    /// node's CPU.
    fn recycle(&mut self, buffers: impl Iterator<Item = Vec<u8>>) {
        for mut buffer in buffers {
            if self.spare_bytes + buffer.capacity() > SPARE_LIMIT_BYTES {
                break;
            }
            buffer.clear();
            self.spare_bytes += buffer.capacity();
            self.spare.push(buffer);
        }
    }

    /// How many spare buffers are kept.
    #[cfg(test)]
    pub(super) fn spare_buffers(&self) -> usize {
        self.spare.len()
    }
}

/// What waiters watch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Every sequence up to this one may be acknowledged (synced under `always`, written
    /// under `everysec`).
    pub acked: u64,
    /// Every sequence up to this one is fdatasynced.
    pub synced: u64,
    /// The log is failing with this error.
    pub failed: Option<Arc<str>>,
    /// The writer exited.
    pub stopped: bool,
}

/// Where appenders, leaders, the writer thread and waiters meet: everything they share but
/// the open segment.
pub(crate) struct Channel {
    pub(super) queue: Mutex<Queue>,
    /// Signals the writer: items queued, kicked or stop requested.
    pub(super) wake: Condvar,
    /// Wakes writers waiting for room (on the async runtime, never a blocked thread): queue
    /// space freed, the failure state changed, or a stop was requested.
    pub(super) room: Notify,
    pub(super) progress: watch::Sender<Progress>,
    pub(super) metrics: Arc<PersistenceMetrics>,
    pub(super) queue_limit: usize,
    /// Under `everysec`, unsynced written bytes that make a sync due at once
    /// ([`crate::persistence::PersistenceConfig::sync_bytes`]).
    pub(super) sync_bytes: u64,
    pub(super) fault: FaultSwitch,
    pub(super) fsync: Fsync,
}

impl Channel {
    /// An empty queue of at most `queue_limit` bytes and nothing published.
    pub(super) fn new(
        metrics: Arc<PersistenceMetrics>,
        queue_limit: usize,
        sync_bytes: u64,
        fsync: Fsync,
    ) -> Channel {
        Channel {
            queue: Mutex::new(Queue::new()),
            wake: Condvar::new(),
            room: Notify::new(),
            progress: watch::Sender::new(Progress::default()),
            metrics,
            queue_limit,
            sync_bytes,
            fault: FaultSwitch::new(),
            fsync,
        }
    }

    /// The counters and gauges.
    pub(crate) fn metrics(&self) -> &Arc<PersistenceMetrics> {
        &self.metrics
    }

    /// What waiters watch, right now.
    pub(crate) fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// The greatest sequence that may be acknowledged.
    pub(crate) fn acked_seq(&self) -> u64 {
        self.progress.borrow().acked
    }

    /// The greatest sequence fdatasynced.
    pub(crate) fn synced_seq(&self) -> u64 {
        self.progress.borrow().synced
    }

    /// Tells waiters the writer thread has exited.
    pub(crate) fn mark_stopped(&self) {
        self.progress
            .send_modify(|progress| progress.stopped = true);
    }

    /// Injects a fault for tests (see [`WriterFault`]).
    pub(crate) fn inject_fault(&self, fault: WriterFault) {
        self.fault.set(fault);
    }

    /// Encodes `record` into the queue and returns its sequence number; never blocks (see
    /// [`crate::persistence::Persistence::append`]).
    pub(crate) fn enqueue(
        &self,
        record: &RecordView<'_>,
        max_record_bytes: usize,
    ) -> Result<u64, PersistenceError> {
        let too_large = |error: WireError| PersistenceError::TooLarge {
            key: String::from_utf8_lossy(record.key).into_owned(),
            reason: error.to_string(),
        };
        let mut queue = self.queue.lock();
        if queue.stop != Stop::No {
            return Err(PersistenceError::Stopped);
        }
        if let Some(reason) = &queue.failed {
            if queue.queued_bytes + record.size() > self.queue_limit {
                return Err(PersistenceError::Unavailable {
                    reason: reason.clone(),
                });
            }
        }
        let seq = queue.next_seq;
        // The frame is encoded straight into the queued batch: into the last one, else into a
        // recycled buffer of written records or a new one.
        let len = match queue.items.back_mut() {
            Some(Item::Frames {
                bytes,
                last_seq,
                records,
            }) => {
                let len = format::encode_record_into(record, max_record_bytes, bytes)
                    .map_err(too_large)?;
                *last_seq = seq;
                *records += 1;
                len
            }
            _ => {
                let mut bytes = queue
                    .buffer()
                    .unwrap_or_else(|| Vec::with_capacity(NEW_BATCH_CAPACITY));
                let len = format::encode_record_into(record, max_record_bytes, &mut bytes)
                    .map_err(too_large)?;
                queue.items.push_back(Item::Frames {
                    bytes,
                    last_seq: seq,
                    records: 1,
                });
                len
            }
        };
        queue.next_seq += 1;
        queue.queued_bytes += len;
        self.metrics
            .queued_bytes
            .store(queue.queued_bytes as u64, Ordering::Relaxed);
        // Under `everysec` the waiting appender writes the record itself (see
        // [`super::leader`]); the writer thread only needs waking when it sleeps without a
        // deadline. A wake-up per record would be a large part of the cost of disc mode.
        let wake = self.fsync == Fsync::Always || queue.parked;
        queue.parked = false;
        drop(queue);
        if wake {
            self.wake.notify_one();
        }
        Ok(seq)
    }

    /// Admission of a local write (see [`crate::persistence::Persistence::admit_write`]):
    /// `Unavailable` while the log is failing, `Stopped` after shutdown. Never waits: a full
    /// queue is waited for beforehand, asynchronously ([`Channel::wait_for_room`]).
    pub(crate) fn admit(&self) -> Result<(), PersistenceError> {
        // Fast path without the queue lock: the writer keeps the gauge current.
        if self.metrics.failing.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let queue = self.queue.lock();
        if let Some(reason) = &queue.failed {
            return Err(PersistenceError::Unavailable {
                reason: reason.clone(),
            });
        }
        if queue.stop != Stop::No {
            return Err(PersistenceError::Stopped);
        }
        Ok(())
    }

    /// Whether a writer may go ahead without waiting: the queue is below its limit, or the
    /// log is failing (the write is refused at once) or stopped. Two relaxed loads: the writer
    /// keeps both gauges current.
    pub(crate) fn has_room(&self) -> bool {
        self.metrics.failing.load(Ordering::Relaxed) != 0
            || (self.metrics.queued_bytes.load(Ordering::Relaxed) as usize) < self.queue_limit
            || self.queue.lock().stop != Stop::No
    }

    /// Waits, without blocking the thread, until [`Channel::has_room`].
    pub(crate) async fn wait_for_room(&self) {
        loop {
            let freed = self.room.notified();
            tokio::pin!(freed);
            // Registered before the check, so a wake-up between the two is not missed.
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    /// The failure the log is in, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.queue.lock().failed.clone()
    }

    /// The sequence of the last record appended (0 before the first).
    pub(crate) fn last_appended(&self) -> u64 {
        self.queue.lock().next_seq - 1
    }

    /// Queues a rotation behind every record queued so far and waits for the writer thread to
    /// start the new segment; returns its sequence.
    pub(crate) fn rotate(&self) -> Result<u64, PersistenceError> {
        let (reply, answer) = sync_channel(1);
        {
            let mut queue = self.queue.lock();
            if queue.stop != Stop::No {
                return Err(PersistenceError::Stopped);
            }
            queue.items.push_back(Item::Rotate { reply });
            queue.kicked = true;
        }
        self.wake.notify_one();
        match answer.recv() {
            Ok(Ok(segment)) => Ok(segment),
            Ok(Err(reason)) => Err(PersistenceError::Unavailable { reason }),
            Err(_) => Err(PersistenceError::Stopped),
        }
    }

    /// Asks the writer to stop (`Abort` overrides a `Clean` stop already asked for) and wakes
    /// everyone waiting on the queue.
    pub(crate) fn request_stop(&self, how: Stop) {
        {
            let mut queue = self.queue.lock();
            if queue.stop == Stop::No || how == Stop::Abort {
                queue.stop = how;
            }
        }
        self.wake.notify_all();
        self.room.notify_waiters();
    }

    /// Returns emptied batch buffers to the queue for reuse.
    pub(super) fn recycle(&self, buffers: Vec<Vec<u8>>) {
        if !buffers.is_empty() {
            self.queue.lock().recycle(buffers.into_iter());
        }
    }

    /// Makes the writer thread run a round now.
    pub(super) fn kick(&self) {
        self.queue.lock().kicked = true;
        self.wake.notify_one();
    }

    /// Takes queued items in order: every item, or (`frames_only`) the frames before the first
    /// rotation. Frees their queue space.
    pub(super) fn take(&self, frames_only: bool) -> Vec<Item> {
        let mut queue = self.queue.lock();
        let count = if frames_only {
            queue
                .items
                .iter()
                .position(|item| matches!(item, Item::Rotate { .. }))
                .unwrap_or(queue.items.len())
        } else {
            queue.items.len()
        };
        if count == 0 {
            return Vec::new();
        }
        let items: Vec<Item> = queue.items.drain(..count).collect();
        let freed: usize = items
            .iter()
            .map(|item| match item {
                Item::Frames { bytes, .. } => bytes.len(),
                Item::Rotate { .. } => 0,
            })
            .sum();
        queue.queued_bytes = queue.queued_bytes.saturating_sub(freed);
        self.metrics
            .queued_bytes
            .store(queue.queued_bytes as u64, Ordering::Relaxed);
        drop(queue);
        self.room.notify_waiters();
        items
    }
}

/// Appends queued frames to a batch being assembled, taking the first one without a copy;
/// the buffers of the others go to `used`.
pub(super) fn join_frames(batch: &mut Vec<u8>, bytes: Vec<u8>, used: &mut Vec<Vec<u8>>) {
    if batch.is_empty() {
        *batch = bytes;
    } else {
        batch.extend_from_slice(&bytes);
        used.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_buffers_are_reused_empty_up_to_the_limit() {
        let mut queue = Queue::new();
        assert!(queue.buffer().is_none());
        let big = vec![7u8; SPARE_LIMIT_BYTES - 1024];
        let small = vec![9u8; 512];
        let over = vec![1u8; 4096];
        queue.recycle([big, small, over].into_iter());
        // The third buffer would exceed the limit: dropped.
        assert_eq!(queue.spare.len(), 2);
        assert!(queue.spare_bytes <= SPARE_LIMIT_BYTES);
        let buffer = queue.buffer().expect("a spare buffer");
        assert!(buffer.is_empty());
        assert!(buffer.capacity() >= 512);
        let buffer = queue.buffer().expect("a spare buffer");
        assert!(buffer.is_empty());
        assert!(buffer.capacity() >= SPARE_LIMIT_BYTES - 1024);
        assert_eq!(queue.spare_bytes, 0);
        assert!(queue.buffer().is_none());
    }
}
