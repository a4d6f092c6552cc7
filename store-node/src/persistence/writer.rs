//! The log writer: a dedicated thread doing group commit.
//!
//! Appenders encode their record on their own thread, push the frame into a bounded queue under
//! a short lock and get a sequence number. The writer takes everything queued at once, writes
//! it with one `write`, and then:
//! - `fsync=always`: fdatasyncs and publishes the batch's last sequence as acknowledged, so
//!   [`super::Persistence::wait_durable`] returns only once the record is on disc; appenders
//!   arriving during the fdatasync form the next batch (group commit).
//! - `fsync=everysec`: publishes right after the write (the record survives a process crash,
//!   not a power cut) and fdatasyncs at most a second after the first unsynced write.
//!
//! A write or fdatasync error (disc full, I/O error) makes the log *failing*: local writes are
//! refused at admission with [`PersistenceError::Unavailable`] (a `MISCONF` error for clients,
//! before they are applied) and waiters get it too. Every second the writer cuts the segment back to its last synced length and
//! rewrites everything since (it keeps those batches until they are synced), then clears the
//! failure. Never a panic.
//!
//! Rotation (for snapshots) is an item in the same queue, so every record queued before it lands
//! in the old segment, which is fdatasynced before the new segment is created: an older segment
//! is therefore never torn, and damage in it is real corruption.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::format::{self, FileHeader, FILE_HEADER_LEN, WAL_MAGIC};
use super::metrics::PersistenceMetrics;
use crate::config::Fsync;

/// How long `everysec` lets written data stay unsynced, and the retry period after an error.
const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// What the writer is asked to do.
pub(crate) enum Item {
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
pub(crate) struct Queue {
    pub items: VecDeque<Item>,
    pub next_seq: u64,
    pub queued_bytes: usize,
    pub failed: Option<String>,
    pub stop: Stop,
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

/// A fault injected by tests ([`super::Persistence::inject_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WriterFault {
    /// Writes go to the file.
    None = 0,
    /// Every write fails with ENOSPC, as on a full disc.
    Fail = 1,
    /// The writer waits before writing, as on a stalled disc.
    Stall = 2,
}

/// State shared by the handle and the writer thread.
pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    /// Signals the writer: items queued or stop requested.
    pub wake: Condvar,
    /// Signals appenders: queue space freed or failure state changed.
    pub space: Condvar,
    pub progress: watch::Sender<Progress>,
    pub metrics: Arc<PersistenceMetrics>,
    pub queue_limit: usize,
    /// [`WriterFault`] as a number.
    pub fault: AtomicU8,
}

impl Shared {
    pub(crate) fn new(metrics: Arc<PersistenceMetrics>, queue_limit: usize) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                next_seq: 1,
                queued_bytes: 0,
                failed: None,
                stop: Stop::No,
            }),
            wake: Condvar::new(),
            space: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            metrics,
            queue_limit,
            fault: AtomicU8::new(WriterFault::None as u8),
        }
    }
}

/// A batch written but not yet synced.
struct Pending {
    bytes: Vec<u8>,
    last_seq: u64,
}

/// The writer thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    node_id: u32,
    fsync: Fsync,
    file: File,
    path: PathBuf,
    segment: u64,
    /// Current length of the segment.
    len: u64,
    /// Length known to be on disc.
    synced_len: u64,
    /// Batches since the last sync; `written` of them are in the file.
    unsynced: Vec<Pending>,
    written: usize,
    written_seq: u64,
    synced_seq: u64,
    last_sync: Instant,
    failing: bool,
}

/// Creates segment `seq` with its header, synced, and the directory entry synced.
pub(crate) fn create_segment(
    dir: &Path,
    node_id: u32,
    seq: u64,
) -> io::Result<(File, PathBuf, u64)> {
    let path = dir.join(format::segment_name(seq));
    // A leftover with this number can only come from a rotation that failed midway.
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let header = FileHeader {
        magic: WAL_MAGIC,
        node_id,
        seq,
    }
    .encode();
    file.write_all(&header)?;
    file.sync_data()?;
    File::open(dir)?.sync_all()?;
    Ok((file, path, FILE_HEADER_LEN as u64))
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        dir: PathBuf,
        node_id: u32,
        fsync: Fsync,
        segment: u64,
    ) -> io::Result<Writer> {
        let (file, path, len) = create_segment(&dir, node_id, segment)?;
        shared.metrics.disc_bytes.fetch_add(len, Ordering::Relaxed);
        shared
            .metrics
            .log_bytes_since_snapshot
            .fetch_add(len, Ordering::Relaxed);
        Ok(Writer {
            shared,
            dir,
            node_id,
            fsync,
            file,
            path,
            segment,
            len,
            synced_len: len,
            unsynced: Vec::new(),
            written: 0,
            written_seq: 0,
            synced_seq: 0,
            last_sync: Instant::now(),
            failing: false,
        })
    }

    /// The thread body.
    pub(crate) fn run(mut self) {
        loop {
            let (items, stop) = self.next_items();
            if stop == Stop::Abort {
                return;
            }
            let mut batch: Vec<u8> = Vec::new();
            let mut last_seq = 0;
            let mut records = 0;
            for item in items {
                match item {
                    Item::Frames {
                        bytes,
                        last_seq: seq,
                        records: count,
                    } => {
                        if batch.is_empty() {
                            batch = bytes;
                        } else {
                            batch.extend_from_slice(&bytes);
                        }
                        last_seq = seq;
                        records += count;
                    }
                    Item::Rotate { reply } => {
                        let taken = std::mem::take(&mut batch);
                        if !self.persist(taken, last_seq, records, true) {
                            return;
                        }
                        records = 0;
                        // The receiver may have given up; nothing to do then.
                        let _ = reply.send(self.rotate());
                    }
                }
            }
            let sync_now = match self.fsync {
                Fsync::Always => true,
                Fsync::Everysec => self.last_sync.elapsed() >= SYNC_PERIOD,
            };
            if !self.persist(batch, last_seq, records, sync_now) {
                return;
            }
            if stop == Stop::Clean {
                let empty = self.shared.queue.lock().items.is_empty();
                if empty {
                    self.persist(Vec::new(), 0, 0, true);
                    return;
                }
            }
        }
    }

    /// Blocks until there is work: items, a stop request, or an `everysec` sync due.
    fn next_items(&mut self) -> (Vec<Item>, Stop) {
        let mut queue = self.shared.queue.lock();
        loop {
            if queue.stop == Stop::Abort {
                return (Vec::new(), Stop::Abort);
            }
            if !queue.items.is_empty() {
                let items: Vec<Item> = queue.items.drain(..).collect();
                queue.queued_bytes = 0;
                self.shared.metrics.queued_bytes.store(0, Ordering::Relaxed);
                self.shared.space.notify_all();
                return (items, queue.stop);
            }
            if queue.stop == Stop::Clean {
                return (Vec::new(), Stop::Clean);
            }
            if self.unsynced.is_empty() {
                self.shared.wake.wait(&mut queue);
            } else {
                let deadline = self.last_sync + SYNC_PERIOD;
                if Instant::now() >= deadline {
                    return (Vec::new(), Stop::No);
                }
                self.shared.wake.wait_until(&mut queue, deadline);
            }
        }
    }

    /// Writes `batch` (and syncs when asked), retrying every second through failures.
    /// Returns false when a stop was requested while failing.
    fn persist(&mut self, batch: Vec<u8>, last_seq: u64, records: u64, sync_now: bool) -> bool {
        if !batch.is_empty() {
            self.shared
                .metrics
                .records_written
                .fetch_add(records, Ordering::Relaxed);
            self.unsynced.push(Pending {
                bytes: batch,
                last_seq,
            });
        }
        let mut sync_now = sync_now;
        loop {
            match self.try_persist(sync_now) {
                Ok(()) => {
                    if self.failing {
                        self.set_failed(None);
                    }
                    return true;
                }
                Err((step, error)) => {
                    self.shared
                        .metrics
                        .io_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        file = %self.path.display(),
                        step,
                        error = %error,
                        "write-ahead log failing; refusing writes until it recovers"
                    );
                    self.set_failed(Some(format!("{step} {}: {error}", self.path.display())));
                    self.rewind();
                    // The retry must prove the bytes reached the disc.
                    sync_now = true;
                    let mut queue = self.shared.queue.lock();
                    if queue.stop == Stop::No {
                        self.shared.wake.wait_for(&mut queue, SYNC_PERIOD);
                    }
                    if queue.stop != Stop::No {
                        return false;
                    }
                }
            }
        }
    }

    fn try_persist(&mut self, sync_now: bool) -> Result<(), (&'static str, io::Error)> {
        while self.shared.fault.load(Ordering::Relaxed) == WriterFault::Stall as u8 {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.written < self.unsynced.len()
            && self.shared.fault.load(Ordering::Relaxed) == WriterFault::Fail as u8
        {
            // ENOSPC: "No space left on device".
            return Err(("write", io::Error::from_raw_os_error(28)));
        }
        while self.written < self.unsynced.len() {
            let pending = &self.unsynced[self.written];
            self.file
                .write_all(&pending.bytes)
                .map_err(|error| ("write", error))?;
            let size = pending.bytes.len() as u64;
            self.len += size;
            self.written_seq = pending.last_seq;
            self.written += 1;
            let metrics = &self.shared.metrics;
            metrics.bytes_written.fetch_add(size, Ordering::Relaxed);
            metrics.disc_bytes.fetch_add(size, Ordering::Relaxed);
            metrics
                .log_bytes_since_snapshot
                .fetch_add(size, Ordering::Relaxed);
        }
        if self.fsync == Fsync::Everysec {
            self.publish();
        }
        if sync_now && self.synced_len < self.len {
            let started = Instant::now();
            self.file
                .sync_data()
                .map_err(|error| ("fdatasync", error))?;
            self.shared.metrics.observe_fsync(started.elapsed());
            self.synced_len = self.len;
            self.synced_seq = self.written_seq;
            self.unsynced.clear();
            self.written = 0;
            self.last_sync = Instant::now();
            self.publish();
        } else if sync_now {
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    fn publish(&self) {
        let acked = match self.fsync {
            Fsync::Always => self.synced_seq,
            Fsync::Everysec => self.written_seq,
        };
        let synced = self.synced_seq;
        self.shared.progress.send_if_modified(|progress| {
            let changed = progress.acked < acked || progress.synced < synced;
            progress.acked = progress.acked.max(acked);
            progress.synced = progress.synced.max(synced);
            changed
        });
    }

    /// After an error: cut the segment back to its synced length so the unsynced batches can
    /// be rewritten without leaving a torn frame in the middle of the log.
    fn rewind(&mut self) {
        if let Err(error) = self.file.set_len(self.synced_len) {
            tracing::error!(file = %self.path.display(), error = %error, "failed to cut the log back after an error");
        }
        let cut = self.len.saturating_sub(self.synced_len);
        let metrics = &self.shared.metrics;
        metrics.disc_bytes.fetch_sub(
            cut.min(metrics.disc_bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        metrics.log_bytes_since_snapshot.fetch_sub(
            cut.min(metrics.log_bytes_since_snapshot.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.len = self.synced_len;
        self.written = 0;
    }

    fn set_failed(&mut self, reason: Option<String>) {
        let failing = reason.is_some();
        self.failing = failing;
        self.shared
            .metrics
            .failing
            .store(u64::from(failing), Ordering::Relaxed);
        let shared_reason: Option<Arc<str>> = reason.as_deref().map(Arc::from);
        self.shared.queue.lock().failed = reason;
        self.shared.space.notify_all();
        self.shared
            .progress
            .send_modify(|progress| progress.failed = shared_reason);
        if !failing {
            tracing::info!(file = %self.path.display(), "write-ahead log recovered from the error");
        }
    }

    /// Starts the next segment (the current one is synced).
    fn rotate(&mut self) -> Result<u64, String> {
        let next = self.segment + 1;
        match create_segment(&self.dir, self.node_id, next) {
            Ok((file, path, len)) => {
                self.file = file;
                self.path = path;
                self.segment = next;
                self.len = len;
                self.synced_len = len;
                let metrics = &self.shared.metrics;
                metrics.disc_bytes.fetch_add(len, Ordering::Relaxed);
                metrics
                    .log_bytes_since_snapshot
                    .store(len, Ordering::Relaxed);
                tracing::debug!(segment = next, "started a new log segment");
                Ok(next)
            }
            Err(error) => {
                self.shared
                    .metrics
                    .io_errors
                    .fetch_add(1, Ordering::Relaxed);
                let reason = format!(
                    "create {}: {error}",
                    self.dir.join(format::segment_name(next)).display()
                );
                tracing::error!(segment = next, error = %error, "failed to start a new log segment");
                Err(reason)
            }
        }
    }
}
