//! The log writer: group commit, led by the waiting appender under `everysec` and by a
//! dedicated thread under `always`.
//!
//! Appenders encode their record on their own thread straight into a queued batch buffer
//! (under a short lock of the bounded queue) and get a sequence number. The open segment ([`Log`]) sits behind its own lock;
//! whoever holds it takes everything queued at once (in sequence order, since taking happens
//! under that lock), writes it with one `write`, and then:
//! - `fsync=always`: the writer thread fdatasyncs and publishes the batch's last sequence as
//!   acknowledged, so [`super::Persistence::wait_durable`] returns only once the record is on
//!   disc; appenders arriving during the fdatasync form the next batch (group commit).
//! - `fsync=everysec`: the appender waiting for its record takes the log lock itself
//!   ([`lead`]), writes whatever is queued (its own record and every other appender's) and
//!   publishes right after the write (the record survives a process crash, not a power cut).
//!   A busy log lock is never waited for on the thread: the appender's task awaits the holder's
//!   progress (at most [`LEAD_RETRY`]) and tries again, and after [`LEAD_BUSY_WAIT`] leaves its
//!   record to the writer thread.
//!   Handing each record to the writer thread instead cost a thread wake-up per record and a
//!   task wake-up per waiter, which on two cores cut throughput to about half of RAM mode
//!   (docs/persistence.md). The writer thread fdatasyncs at most a second after the first
//!   unsynced write, or at once when `sync_bytes` (4 MiB) are written and unsynced, without
//!   holding the log lock (appenders keep writing meanwhile), and every [`FLUSH_TICK`] writes
//!   records nobody waits for (applied from peers). The early sync bounds the copy of the
//!   unsynced bytes the log keeps for a rewrite after an error. Batch buffers go back to the
//!   queue as soon as they are written: kept until the sync, pipelined writes (over 100 MB/s)
//!   made every batch fresh memory, and zeroing its pages (`clear_page_erms`, 15 % of the
//!   node's CPU) made everysec cost more CPU per SET than fsync=always.
//!
//! A write or fdatasync error (disc full, I/O error) makes the log *failing*: local writes are
//! refused at admission with [`PersistenceError::Unavailable`] (a `MISCONF` error for clients,
//! before they are applied) and waiters get it too. Only the writer thread touches a failing
//! log: every second it cuts the segment back to its last synced length and rewrites everything
//! since (the log keeps a copy of those bytes until they are synced), then clears the failure. Never a
//! panic.
//!
//! Rotation (for snapshots) is an item in the same queue, only ever taken by the writer thread,
//! so every record queued before it lands in the old segment, which is fdatasynced before the
//! new segment is created: an older segment is therefore never torn, and damage in it is real
//! corruption.
//!
//! [`PersistenceError::Unavailable`]: super::PersistenceError::Unavailable

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::watch;

use super::format::{self, FileHeader, FILE_HEADER_LEN, WAL_MAGIC};
use super::metrics::PersistenceMetrics;
use crate::config::Fsync;

/// How long `everysec` lets written data stay unsynced, and the retry period after an error.
const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// Under `everysec`, how long a queued record nobody leads to the file (a record applied from
/// a peer) may wait for the writer thread.
pub(crate) const FLUSH_TICK: Duration = Duration::from_millis(10);

/// How long an appender that found the log lock busy waits for the holder's progress before
/// trying to lead again: a leader publishes as soon as its `write` returned, but a holder that
/// wrote nothing publishes nothing (1 ms, the runtime timer's resolution).
pub(crate) const LEAD_RETRY: Duration = Duration::from_millis(1);

/// How long an appender keeps trying to lead while the log lock stays busy before leaving its
/// record to the writer thread: longer than a few writes means a rotation or a descheduled
/// holder.
pub(crate) const LEAD_BUSY_WAIT: Duration = Duration::from_millis(5);

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
    /// The writer thread waits with nothing to do and no deadline (`everysec`): the next
    /// append wakes it.
    pub parked: bool,
    /// The writer thread should look at the log now: a leading appender wrote into a synced
    /// log (a sync is now due within a second), failed, or left its record to the writer.
    pub kicked: bool,
    /// Emptied buffers of written batches, reused for the next queued frames (see
    /// [`Queue::recycle`]).
    pub spare: Vec<Vec<u8>>,
    /// Capacity held in `spare`.
    pub spare_bytes: usize,
}

impl Queue {
    /// An empty queue whose first record gets sequence 1.
    pub(crate) fn new() -> Queue {
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
}

/// Capacity [`Queue::spare`] may hold in all. Batch buffers come back as soon as they are
/// written (the log keeps its own copy of the unsynced bytes), so a few are in use at a time.
const SPARE_LIMIT_BYTES: usize = 8 << 20;

impl Queue {
    /// A buffer for new queued frames: a spare one when there is one.
    pub(crate) fn buffer(&mut self) -> Option<Vec<u8>> {
        let buffer = self.spare.pop()?;
        self.spare_bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps the buffers of written batches for reuse (up to [`SPARE_LIMIT_BYTES`]). Freeing
    /// them let the allocator return their pages to the kernel, and the next batches then
    /// faulted in and zeroed fresh (transparent huge) pages: under everysec on pipelined
    /// writes that was 14 % of the node's CPU.
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

/// State shared by the handle, leading appenders and the writer thread. Lock order: `log`
/// before `queue`.
pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    /// Signals the writer: items queued, kicked or stop requested.
    pub wake: Condvar,
    /// Signals appenders: queue space freed or failure state changed.
    pub space: Condvar,
    pub progress: watch::Sender<Progress>,
    pub metrics: Arc<PersistenceMetrics>,
    pub queue_limit: usize,
    /// Under `everysec`, unsynced written bytes that make a sync due at once
    /// ([`super::PersistenceConfig::sync_bytes`]).
    pub sync_bytes: u64,
    /// [`WriterFault`] as a number.
    pub fault: AtomicU8,
    pub fsync: Fsync,
    /// The open segment.
    pub log: Mutex<Log>,
}

impl Shared {
    /// Creates segment `segment` (see [`create_segment`]) and the shared state around it.
    pub(crate) fn open(
        metrics: Arc<PersistenceMetrics>,
        queue_limit: usize,
        sync_bytes: u64,
        dir: PathBuf,
        node_id: u32,
        fsync: Fsync,
        segment: u64,
    ) -> io::Result<Shared> {
        let (file, path, len) = create_segment(&dir, node_id, segment)?;
        metrics.disc_bytes.fetch_add(len, Ordering::Relaxed);
        metrics
            .log_bytes_since_snapshot
            .fetch_add(len, Ordering::Relaxed);
        Ok(Shared {
            queue: Mutex::new(Queue::new()),
            wake: Condvar::new(),
            space: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            metrics,
            queue_limit,
            sync_bytes,
            fault: AtomicU8::new(WriterFault::None as u8),
            fsync,
            log: Mutex::new(Log {
                dir,
                node_id,
                file: Arc::new(file),
                path,
                segment,
                len,
                synced_len: len,
                pending: Vec::new(),
                unsynced: Vec::new(),
                written_seq: 0,
                synced_seq: 0,
                last_sync: Instant::now(),
                failing: false,
            }),
        })
    }

    fn fault(&self) -> u8 {
        self.fault.load(Ordering::Relaxed)
    }

    /// Returns emptied batch buffers to the queue for reuse.
    fn recycle(&self, buffers: Vec<Vec<u8>>) {
        if !buffers.is_empty() {
            self.queue.lock().recycle(buffers.into_iter());
        }
    }

    /// Makes the writer thread run a round now.
    pub(crate) fn kick(&self) {
        self.queue.lock().kicked = true;
        self.wake.notify_one();
    }

    /// Takes queued items in order: every item, or (`frames_only`) the frames before the first
    /// rotation. Frees their queue space.
    fn take(&self, frames_only: bool) -> Vec<Item> {
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
        self.space.notify_all();
        items
    }
}

/// A batch not yet written.
struct Pending {
    bytes: Vec<u8>,
    last_seq: u64,
}

/// The open segment and what of it is written and synced.
pub(crate) struct Log {
    dir: PathBuf,
    node_id: u32,
    /// Shared so the writer thread can fdatasync it without holding the lock.
    file: Arc<File>,
    path: PathBuf,
    segment: u64,
    /// Current length of the segment.
    len: u64,
    /// Length known to be on disc.
    synced_len: u64,
    /// Batches not yet written.
    pending: Vec<Pending>,
    /// A copy of the bytes written since the last sync (the file from `synced_len` to `len`),
    /// to write again after an error: a failed fdatasync may have lost them from the page
    /// cache. A copy rather than the batches themselves, so that their buffers go back to the
    /// queue at once: held until the sync, batches of a few records each kept faulting in
    /// fresh buffers (a second's worth of them under `everysec`).
    unsynced: Vec<u8>,
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

/// Appends queued frames to a batch being assembled, taking the first one without a copy;
/// the buffers of the others go to `used`.
fn join_frames(batch: &mut Vec<u8>, bytes: Vec<u8>, used: &mut Vec<Vec<u8>>) {
    if batch.is_empty() {
        *batch = bytes;
    } else {
        batch.extend_from_slice(&bytes);
        used.push(bytes);
    }
}

/// Concatenates taken frames into one batch: (bytes, last sequence, record count); the
/// emptied buffers go back to the queue.
fn concat(shared: &Shared, items: Vec<Item>) -> (Vec<u8>, u64, u64) {
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
    shared.recycle(used);
    (batch, last_seq, records)
}

/// Under `everysec`, called by an appender waiting for record `seq`: writes everything queued
/// on the calling thread (group commit led by the waiter) and says whether `seq` may now be
/// acknowledged. `Some(false)` leaves it to the writer thread (another mode, a failing or faulty
/// log, a rotation queued first, a stop): the caller then waits for [`Progress`]. `None`: the
/// log lock is busy (a leader writing, the writer thread syncing or rotating); it is never
/// waited for here, since spinning and parking a runtime thread on it made everysec slower
/// than fsync=always on pipelined writes (`sched_yield` was 16.5 % of the runtime threads'
/// context switches): the caller awaits the holder's progress instead and tries again.
pub(crate) fn lead(shared: &Shared, seq: u64) -> Option<bool> {
    if shared.fsync != Fsync::Everysec
        || shared.fault() != WriterFault::None as u8
        || shared.metrics.failing.load(Ordering::Relaxed) != 0
    {
        return Some(false);
    }
    let mut log = shared.log.try_lock()?;
    if log.written_seq >= seq && !log.failing {
        return Some(true);
    }
    if log.failing || shared.fault() != WriterFault::None as u8 {
        drop(log);
        shared.kick();
        return Some(false);
    }
    if shared.queue.lock().stop != Stop::No {
        return Some(false);
    }
    let (batch, last_seq, records) = concat(shared, shared.take(true));
    if batch.is_empty() {
        // A rotation is queued before the record: the writer thread takes both in order.
        drop(log);
        shared.kick();
        return Some(false);
    }
    let was_synced = !log.dirty();
    let was_below = log.unsynced_bytes() < shared.sync_bytes;
    log.push(shared, batch, last_seq, records);
    match log.write_pending(shared) {
        Ok(()) => {
            let done = log.written_seq >= seq;
            let sync_due = was_below && log.unsynced_bytes() >= shared.sync_bytes;
            drop(log);
            if was_synced || !done || sync_due {
                // A sync is due within a second of this first unsynced write, and at once
                // when the unsynced bytes reach `sync_bytes`.
                shared.kick();
            }
            Some(done)
        }
        Err((step, error)) => {
            log.fail(shared, step, error);
            drop(log);
            shared.kick();
            Some(false)
        }
    }
}

impl Log {
    /// Whether written or queued-for-writing bytes are not yet synced.
    fn dirty(&self) -> bool {
        !self.pending.is_empty() || self.synced_len < self.len
    }

    /// Bytes written to the file and not yet fdatasynced.
    fn unsynced_bytes(&self) -> u64 {
        self.len.saturating_sub(self.synced_len)
    }

    /// Under `everysec`, whether a sync is due now: a second after the last one, or once
    /// `sync_bytes` are written and unsynced (with `extra` bytes about to be written).
    fn everysec_sync_due(&self, shared: &Shared, extra: u64) -> bool {
        self.last_sync.elapsed() >= SYNC_PERIOD
            || self.unsynced_bytes() + extra >= shared.sync_bytes
    }

    /// Adds a batch to write.
    fn push(&mut self, shared: &Shared, batch: Vec<u8>, last_seq: u64, records: u64) {
        if batch.is_empty() {
            return;
        }
        shared
            .metrics
            .records_written
            .fetch_add(records, Ordering::Relaxed);
        self.pending.push(Pending {
            bytes: batch,
            last_seq,
        });
    }

    /// Writes every batch not yet in the file; under `everysec`, publishes them.
    fn write_pending(&mut self, shared: &Shared) -> Result<(), (&'static str, io::Error)> {
        if !self.pending.is_empty() && shared.fault() == WriterFault::Fail as u8 {
            // ENOSPC: "No space left on device".
            return Err(("write", io::Error::from_raw_os_error(28)));
        }
        let mut written = 0;
        let mut result = Ok(());
        for pending in &self.pending {
            if let Err(error) = (&*self.file).write_all(&pending.bytes) {
                result = Err(("write", error));
                break;
            }
            self.unsynced.extend_from_slice(&pending.bytes);
            let size = pending.bytes.len() as u64;
            self.len += size;
            self.written_seq = pending.last_seq;
            written += 1;
            let metrics = &shared.metrics;
            metrics.log_writes.fetch_add(1, Ordering::Relaxed);
            metrics.bytes_written.fetch_add(size, Ordering::Relaxed);
            metrics.disc_bytes.fetch_add(size, Ordering::Relaxed);
            metrics
                .log_bytes_since_snapshot
                .fetch_add(size, Ordering::Relaxed);
        }
        let done: Vec<Vec<u8>> = self
            .pending
            .drain(..written)
            .map(|pending| pending.bytes)
            .collect();
        shared.recycle(done);
        result?;
        if shared.fsync == Fsync::Everysec {
            self.publish(shared);
        }
        Ok(())
    }

    /// Accounts an fdatasync that covered the first `len` bytes of the segment, and drops
    /// those bytes from the page cache ([`super::cache::drop_cached`]).
    fn synced(&mut self, shared: &Shared, len: u64, seq: u64, elapsed: Duration) {
        shared.metrics.observe_fsync(elapsed);
        super::cache::drop_cached(&self.file, self.synced_len, len);
        let covered = len.saturating_sub(self.synced_len) as usize;
        self.unsynced.drain(..covered.min(self.unsynced.len()));
        self.synced_len = len;
        self.synced_seq = seq;
        self.last_sync = Instant::now();
        self.publish(shared);
    }

    fn publish(&self, shared: &Shared) {
        let acked = match shared.fsync {
            Fsync::Always => self.synced_seq,
            Fsync::Everysec => self.written_seq,
        };
        let synced = self.synced_seq;
        shared.progress.send_if_modified(|progress| {
            let changed = progress.acked < acked || progress.synced < synced;
            progress.acked = progress.acked.max(acked);
            progress.synced = progress.synced.max(synced);
            changed
        });
    }

    /// A write or fdatasync failed: the log is failing until the writer thread rewrites it.
    fn fail(&mut self, shared: &Shared, step: &'static str, error: io::Error) {
        shared.metrics.io_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            file = %self.path.display(),
            step,
            error = %error,
            "write-ahead log failing; refusing writes until it recovers"
        );
        self.set_failed(
            shared,
            Some(format!("{step} {}: {error}", self.path.display())),
        );
        self.rewind(shared);
    }

    /// After an error: cut the segment back to its synced length so the unsynced batches can
    /// be rewritten without leaving a torn frame in the middle of the log.
    fn rewind(&mut self, shared: &Shared) {
        if let Err(error) = self.file.set_len(self.synced_len) {
            tracing::error!(file = %self.path.display(), error = %error, "failed to cut the log back after an error");
        }
        // ftruncate leaves the file offset where it was: without the seek the rewrite would
        // land past a hole of zeros, which recovery reads as a torn frame and cuts, with
        // every record after it.
        if let Err(error) = (&*self.file).seek(SeekFrom::Start(self.synced_len)) {
            tracing::error!(file = %self.path.display(), error = %error, "failed to move back to the synced length after an error");
        }
        let cut = self.len.saturating_sub(self.synced_len);
        let metrics = &shared.metrics;
        metrics.disc_bytes.fetch_sub(
            cut.min(metrics.disc_bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        metrics.log_bytes_since_snapshot.fetch_sub(
            cut.min(metrics.log_bytes_since_snapshot.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.len = self.synced_len;
        // What was written since the last sync is written again, before the rest.
        if !self.unsynced.is_empty() {
            let bytes = std::mem::take(&mut self.unsynced);
            self.pending.insert(
                0,
                Pending {
                    bytes,
                    last_seq: self.written_seq,
                },
            );
        }
    }

    fn set_failed(&mut self, shared: &Shared, reason: Option<String>) {
        let failing = reason.is_some();
        self.failing = failing;
        shared
            .metrics
            .failing
            .store(u64::from(failing), Ordering::Relaxed);
        let shared_reason: Option<Arc<str>> = reason.as_deref().map(Arc::from);
        shared.queue.lock().failed = reason;
        shared.space.notify_all();
        shared
            .progress
            .send_modify(|progress| progress.failed = shared_reason);
        if !failing {
            tracing::info!(file = %self.path.display(), "write-ahead log recovered from the error");
        }
    }

    /// Starts the next segment (the current one is synced).
    fn rotate(&mut self, shared: &Shared) -> Result<u64, String> {
        debug_assert!(
            self.pending.is_empty() && self.unsynced.is_empty(),
            "rotating a segment that is not wholly written and synced"
        );
        let next = self.segment + 1;
        match create_segment(&self.dir, self.node_id, next) {
            Ok((file, path, len)) => {
                self.file = Arc::new(file);
                self.path = path;
                self.segment = next;
                self.len = len;
                self.synced_len = len;
                let metrics = &shared.metrics;
                metrics.disc_bytes.fetch_add(len, Ordering::Relaxed);
                metrics
                    .log_bytes_since_snapshot
                    .store(len, Ordering::Relaxed);
                tracing::debug!(segment = next, "started a new log segment");
                Ok(next)
            }
            Err(error) => {
                shared.metrics.io_errors.fetch_add(1, Ordering::Relaxed);
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

/// Writes and, when asked, fdatasyncs everything pushed to `log`. With `unlocked`, the
/// fdatasync runs without the log lock so leading appenders keep writing meanwhile; what they
/// write then is synced next time.
fn write_and_sync(
    shared: &Shared,
    log: &mut MutexGuard<'_, Log>,
    sync_now: bool,
    unlocked: bool,
) -> Result<(), (&'static str, io::Error)> {
    log.write_pending(shared)?;
    if !sync_now {
        return Ok(());
    }
    if log.synced_len >= log.len {
        log.last_sync = Instant::now();
        return Ok(());
    }
    let file = log.file.clone();
    let (len, seq) = (log.len, log.written_seq);
    let sync = || {
        let started = Instant::now();
        file.sync_data().map(|()| started.elapsed())
    };
    let result = if unlocked {
        MutexGuard::unlocked(log, sync)
    } else {
        sync()
    };
    let elapsed = result.map_err(|error| ("fdatasync", error))?;
    // A failure during an unlocked sync (a leading appender's write) rewound the file and put
    // the unsynced bytes back to be written again: nothing to account, the retry syncs. With
    // the lock held (a retry of a failing log) nobody could rewind meanwhile: the sync covered
    // everything written, and the copy must be drained now, or a rotation right after would
    // carry the old segment's bytes into the next rewrite.
    if !(unlocked && log.failing) {
        log.synced(shared, len, seq, elapsed);
    }
    Ok(())
}

/// The writer thread.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// Whether the log held unsynced bytes after the last round, and when a sync is due.
    dirty: bool,
    sync_due: Instant,
}

impl Writer {
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
        loop {
            let stop = self.wait_for_work();
            if stop == Stop::Abort {
                return;
            }
            while shared.fault() == WriterFault::Stall as u8 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut log = shared.log.lock();
            let mut batch: Vec<u8> = Vec::new();
            let mut used = Vec::new();
            let mut last_seq = 0;
            let mut records = 0;
            for item in shared.take(false) {
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
                        if !persist(&shared, &mut log, taken, last_seq, records, true, false) {
                            return;
                        }
                        records = 0;
                        // The receiver may have given up; nothing to do then.
                        let _ = reply.send(log.rotate(&shared));
                    }
                }
            }
            shared.recycle(std::mem::take(&mut used));
            let sync_now = match shared.fsync {
                Fsync::Always => true,
                Fsync::Everysec => log.everysec_sync_due(&shared, batch.len() as u64),
            };
            if !persist(&shared, &mut log, batch, last_seq, records, sync_now, true) {
                return;
            }
            if stop == Stop::Clean {
                let empty = shared.queue.lock().items.is_empty();
                if empty {
                    persist(&shared, &mut log, Vec::new(), 0, 0, true, false);
                    return;
                }
            }
            self.dirty = log.dirty();
            // Leaders wrote `sync_bytes` more during an unlocked sync: sync again at once.
            self.sync_due = if shared.fsync == Fsync::Everysec && log.everysec_sync_due(&shared, 0)
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
        let shared = &*self.shared;
        let mut queue = shared.queue.lock();
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
            match shared.fsync {
                Fsync::Always => {
                    if !queue.items.is_empty() {
                        return Stop::No;
                    }
                    if self.dirty {
                        shared.wake.wait_until(&mut queue, self.sync_due);
                    } else {
                        shared.wake.wait(&mut queue);
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
                        shared.wake.wait_until(&mut queue, until);
                    } else {
                        queue.parked = true;
                        shared.wake.wait(&mut queue);
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
    shared: &Shared,
    log: &mut MutexGuard<'_, Log>,
    batch: Vec<u8>,
    last_seq: u64,
    records: u64,
    sync_now: bool,
    unlocked: bool,
) -> bool {
    log.push(shared, batch, last_seq, records);
    // A leading appender's failure is retried here; the retry must prove the bytes reached
    // the disc.
    let mut sync_now = sync_now || log.failing;
    loop {
        match write_and_sync(shared, log, sync_now, unlocked && !log.failing) {
            Ok(()) => {
                if log.failing {
                    log.set_failed(shared, None);
                }
                return true;
            }
            Err((step, error)) => {
                log.fail(shared, step, error);
                sync_now = true;
                let stopped = MutexGuard::unlocked(log, || {
                    let mut queue = shared.queue.lock();
                    if queue.stop == Stop::No {
                        shared.wake.wait_for(&mut queue, SYNC_PERIOD);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An everysec log on segment 1 in a fresh scratch directory (removed by the caller).
    fn scratch_log(name: &str) -> (PathBuf, Shared) {
        let dir = std::env::temp_dir().join(format!(
            "{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let metrics = Arc::new(PersistenceMetrics::default());
        let shared = Shared::open(
            metrics,
            1 << 20,
            4 << 20,
            dir.clone(),
            1,
            Fsync::Everysec,
            1,
        )
        .expect("open");
        (dir, shared)
    }

    /// Issue 4: once fdatasynced, the log's bytes leave the page cache (docs/persistence.md,
    /// "Page cache").
    #[test]
    fn synced_log_bytes_leave_the_page_cache() {
        let (dir, shared) = scratch_log("store-node-writer-cache");
        if !crate::persistence::cache::dropping_works_in(&dir) {
            eprintln!("skipped: {} keeps dropped pages (tmpfs?)", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let mut log = shared.log.lock();
        log.push(&shared, vec![5u8; 4 << 20], 1, 1);
        log.write_pending(&shared).expect("write");
        let written = crate::persistence::cache::cached_pages(&log.path);
        write_and_sync(&shared, &mut log, true, false).expect("sync");
        let synced = crate::persistence::cache::cached_pages(&log.path);
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            written >= 1000,
            "only {written} pages cached after the write"
        );
        // The last page, partly written, may stay.
        assert!(synced <= 1, "{synced} pages still cached after the sync");
    }

    /// Issue 4: a written batch's buffer goes back to the queue at once (held until the sync,
    /// small batches kept faulting in fresh memory); the log's copy of the unsynced bytes is
    /// what an error rewrites, ahead of the batches not yet written.
    #[test]
    fn written_batches_return_at_once_and_an_error_rewrites_the_unsynced_copy() {
        let (dir, shared) = scratch_log("store-node-writer");
        let mut log = shared.log.lock();
        log.push(&shared, vec![1u8; 100], 1, 1);
        log.write_pending(&shared).expect("write");
        assert_eq!(log.unsynced, vec![1u8; 100]);
        assert!(log.pending.is_empty());
        assert_eq!(shared.queue.lock().spare.len(), 1);
        assert_eq!(shared.progress.borrow().acked, 1);

        write_and_sync(&shared, &mut log, true, false).expect("sync");
        assert!(log.unsynced.is_empty());
        assert_eq!(log.synced_seq, 1);

        log.push(&shared, vec![2u8; 10], 2, 1);
        log.write_pending(&shared).expect("write");
        log.push(&shared, vec![3u8; 5], 3, 1);
        log.fail(&shared, "write", io::Error::from_raw_os_error(28));
        assert_eq!(log.len, log.synced_len);
        let rewrite: Vec<(Vec<u8>, u64)> = log
            .pending
            .iter()
            .map(|pending| (pending.bytes.clone(), pending.last_seq))
            .collect();
        assert_eq!(rewrite, vec![(vec![2u8; 10], 2), (vec![3u8; 5], 3)]);
        log.write_pending(&shared).expect("rewrite");
        assert_eq!(log.written_seq, 3);
        let expected_len = FILE_HEADER_LEN as u64 + 100 + 10 + 5;
        assert_eq!(log.len, expected_len);
        let path = log.path.clone();
        drop(log);
        assert_eq!(
            std::fs::metadata(&path).expect("segment").len(),
            expected_len
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found in review: a retried sync of a failing log (with the lock held) skipped its
    /// accounting, so the copy of the unsynced bytes kept the old segment's bytes across the
    /// rotation that followed, and the next error rewrote them into the new segment: a
    /// misaligned frame that recovery cuts, with every acknowledged record after it.
    #[test]
    fn a_retried_sync_before_a_rotation_leaves_nothing_to_rewrite_in_the_next_segment() {
        let (dir, shared) = scratch_log("store-node-writer-rotate");
        let mut log = shared.log.lock();
        log.push(&shared, vec![1u8; 100], 1, 1);
        log.write_pending(&shared).expect("write");
        log.fail(&shared, "fdatasync", io::Error::from_raw_os_error(5));
        // The writer's retry (persist): rewrite and sync with the lock held, then heal.
        write_and_sync(&shared, &mut log, true, false).expect("retry");
        log.set_failed(&shared, None);
        assert!(log.unsynced.is_empty());
        assert_eq!(log.synced_seq, 1);
        log.rotate(&shared).expect("rotate");
        log.push(&shared, vec![2u8; 10], 2, 1);
        write_and_sync(&shared, &mut log, true, false).expect("sync");
        log.push(&shared, vec![3u8; 5], 3, 1);
        log.write_pending(&shared).expect("write");
        log.fail(&shared, "fdatasync", io::Error::from_raw_os_error(5));
        log.write_pending(&shared).expect("rewrite");
        let path = log.path.clone();
        drop(log);
        let file = std::fs::read(&path).expect("segment 2");
        assert_eq!(
            &file[FILE_HEADER_LEN..],
            [[2u8; 10].as_slice(), &[3u8; 5]].concat()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

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
