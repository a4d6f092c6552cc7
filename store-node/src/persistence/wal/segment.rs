//! The open log segment ([`Log`]): what of it is written and what is fdatasynced, writing
//! queued batches, accounting a sync, and the two ways a segment changes under its writers:
//! an error and a rotation.
//!
//! After a write or fdatasync error the segment is cut back to its last synced length and
//! everything written since is written again, ahead of the batches not yet written: a failed
//! fdatasync may have lost those bytes from the page cache, so the log keeps a copy of them
//! until they are synced. Once the rewrite succeeds the failure is cleared.
//!
//! That copy lets a written batch's buffer go back to the queue at once. Kept until the sync,
//! under pipelined writes (over 100 MB/s) every batch would be fresh memory, and zeroing its
//! pages (`clear_page_erms`, 15 % of the node's CPU) would make everysec cost more CPU per SET
//! than fsync=always.
//!
//! Rotation (for snapshots) is an item in the same queue as the records, only ever taken by
//! the writer thread, so every record queued before it lands in the old segment, which is
//! fdatasynced before the new segment is created: an older segment is therefore never torn,
//! and damage in it is real corruption.
//!
//! Synced bytes leave the page cache ([`crate::persistence::cache`]): the log is read back
//! only at recovery.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::fault::{self, WriterFault};
use super::queue::Channel;
use crate::config::Fsync;
use crate::persistence::cache;
use crate::persistence::format::{self, FileHeader, FILE_HEADER_LEN, WAL_MAGIC};
use crate::persistence::metrics::PersistenceMetrics;

/// How long `everysec` lets written data stay unsynced, and the retry period after an error.
pub(super) const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// A batch not yet written.
struct Pending {
    bytes: Vec<u8>,
    last_seq: u64,
}

/// The open segment and what of it is written and synced.
pub(super) struct Log {
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
    /// queue at once: held until the sync, batches of a few records each would keep faulting
    /// in fresh buffers (a second's worth of them under `everysec`).
    unsynced: Vec<u8>,
    /// Every sequence up to this one is in the file.
    pub(super) written_seq: u64,
    synced_seq: u64,
    /// When the segment was last found or made wholly synced.
    pub(super) last_sync: Instant,
    /// A write or fdatasync failed and the rewrite has not succeeded yet.
    pub(super) failing: bool,
}

/// Creates segment `seq` with its header, synced, and the directory entry synced.
fn create_segment(dir: &Path, node_id: u32, seq: u64) -> io::Result<(File, PathBuf, u64)> {
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

impl Log {
    /// Creates segment `segment` (see [`create_segment`]) and counts its header in the disc
    /// gauges.
    pub(super) fn create(
        dir: PathBuf,
        node_id: u32,
        segment: u64,
        metrics: &PersistenceMetrics,
    ) -> io::Result<Log> {
        let (file, path, len) = create_segment(&dir, node_id, segment)?;
        metrics.disc_bytes.fetch_add(len, Ordering::Relaxed);
        metrics
            .log_bytes_since_snapshot
            .fetch_add(len, Ordering::Relaxed);
        Ok(Log {
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
        })
    }

    /// Whether written or queued-for-writing bytes are not yet synced.
    pub(super) fn dirty(&self) -> bool {
        !self.pending.is_empty() || self.synced_len < self.len
    }

    /// Bytes written to the file and not yet fdatasynced.
    pub(super) fn unsynced_bytes(&self) -> u64 {
        self.len.saturating_sub(self.synced_len)
    }

    /// Under `everysec`, whether a sync is due now: a second after the last one, or once
    /// `sync_bytes` are written and unsynced (with `extra` bytes about to be written).
    pub(super) fn everysec_sync_due(&self, channel: &Channel, extra: u64) -> bool {
        self.last_sync.elapsed() >= SYNC_PERIOD
            || self.unsynced_bytes() + extra >= channel.sync_bytes
    }

    /// Adds a batch to write.
    pub(super) fn push(&mut self, channel: &Channel, batch: Vec<u8>, last_seq: u64, records: u64) {
        if batch.is_empty() {
            return;
        }
        channel
            .metrics
            .records_written
            .fetch_add(records, Ordering::Relaxed);
        self.pending.push(Pending {
            bytes: batch,
            last_seq,
        });
    }

    /// Writes every batch not yet in the file; under `everysec`, publishes them.
    pub(super) fn write_pending(
        &mut self,
        channel: &Channel,
    ) -> Result<(), (&'static str, io::Error)> {
        if !self.pending.is_empty() && channel.fault.get() == WriterFault::Fail {
            return Err(("write", fault::disc_full()));
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
            let metrics = &channel.metrics;
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
        channel.recycle(done);
        result?;
        if channel.fsync == Fsync::Everysec {
            self.publish(channel);
        }
        Ok(())
    }

    /// Accounts an fdatasync that covered the first `len` bytes of the segment, and drops
    /// those bytes from the page cache ([`cache::drop_cached`]).
    fn synced(&mut self, channel: &Channel, len: u64, seq: u64, elapsed: Duration) {
        channel.metrics.observe_fsync(elapsed);
        cache::drop_cached(&self.file, self.synced_len, len);
        let covered = len.saturating_sub(self.synced_len) as usize;
        self.unsynced.drain(..covered.min(self.unsynced.len()));
        self.synced_len = len;
        self.synced_seq = seq;
        self.last_sync = Instant::now();
        self.publish(channel);
    }

    /// Tells waiters how far the segment may be acknowledged and how far it is synced.
    fn publish(&self, channel: &Channel) {
        let acked = match channel.fsync {
            Fsync::Always => self.synced_seq,
            Fsync::Everysec => self.written_seq,
        };
        let synced = self.synced_seq;
        channel.progress.send_if_modified(|progress| {
            let changed = progress.acked < acked || progress.synced < synced;
            progress.acked = progress.acked.max(acked);
            progress.synced = progress.synced.max(synced);
            changed
        });
    }

    /// A write or fdatasync failed: the log is failing until the writer thread rewrites it.
    pub(super) fn fail(&mut self, channel: &Channel, step: &'static str, error: io::Error) {
        channel.metrics.io_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            file = %self.path.display(),
            step,
            error = %error,
            "write-ahead log failing; refusing writes until it recovers"
        );
        self.set_failed(
            channel,
            Some(format!("{step} {}: {error}", self.path.display())),
        );
        self.rewind(channel);
    }

    /// After an error: cut the segment back to its synced length so the unsynced batches can
    /// be rewritten without leaving a torn frame in the middle of the log.
    fn rewind(&mut self, channel: &Channel) {
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
        let metrics = &channel.metrics;
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

    pub(super) fn set_failed(&mut self, channel: &Channel, reason: Option<String>) {
        let failing = reason.is_some();
        self.failing = failing;
        channel
            .metrics
            .failing
            .store(u64::from(failing), Ordering::Relaxed);
        let shared_reason: Option<Arc<str>> = reason.as_deref().map(Arc::from);
        channel.queue.lock().failed = reason;
        channel.room.notify_waiters();
        channel
            .progress
            .send_modify(|progress| progress.failed = shared_reason);
        if !failing {
            tracing::info!(file = %self.path.display(), "write-ahead log recovered from the error");
        }
    }

    /// Starts the next segment (the current one is synced).
    pub(super) fn rotate(&mut self, channel: &Channel) -> Result<u64, String> {
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
                let metrics = &channel.metrics;
                metrics.disc_bytes.fetch_add(len, Ordering::Relaxed);
                metrics
                    .log_bytes_since_snapshot
                    .store(len, Ordering::Relaxed);
                tracing::debug!(segment = next, "started a new log segment");
                Ok(next)
            }
            Err(error) => {
                channel.metrics.io_errors.fetch_add(1, Ordering::Relaxed);
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
pub(super) fn write_and_sync(
    channel: &Channel,
    log: &mut MutexGuard<'_, Log>,
    sync_now: bool,
    unlocked: bool,
) -> Result<(), (&'static str, io::Error)> {
    log.write_pending(channel)?;
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
        log.synced(channel, len, seq, elapsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::wal::Shared;

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

    /// Once fdatasynced, the log's bytes leave the page cache (docs/persistence.md, "Page
    /// cache").
    #[test]
    fn synced_log_bytes_leave_the_page_cache() {
        let (dir, shared) = scratch_log("store-node-writer-cache");
        if !cache::dropping_works_in(&dir) {
            eprintln!("skipped: {} keeps dropped pages (tmpfs?)", dir.display());
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let channel = shared.channel();
        let mut log = shared.log.lock();
        log.push(channel, vec![5u8; 4 << 20], 1, 1);
        log.write_pending(channel).expect("write");
        let written = cache::cached_pages(&log.path);
        write_and_sync(channel, &mut log, true, false).expect("sync");
        let synced = cache::cached_pages(&log.path);
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            written >= 1000,
            "only {written} pages cached after the write"
        );
        // The last page, partly written, may stay.
        assert!(synced <= 1, "{synced} pages still cached after the sync");
    }

    /// A written batch's buffer goes back to the queue at once (held until the sync, small
    /// batches would keep faulting in fresh memory); the log's copy of the unsynced bytes is
    /// what an error rewrites, ahead of the batches not yet written.
    #[test]
    fn written_batches_return_at_once_and_an_error_rewrites_the_unsynced_copy() {
        let (dir, shared) = scratch_log("store-node-writer");
        let channel = shared.channel();
        let mut log = shared.log.lock();
        log.push(channel, vec![1u8; 100], 1, 1);
        log.write_pending(channel).expect("write");
        assert_eq!(log.unsynced, vec![1u8; 100]);
        assert!(log.pending.is_empty());
        assert_eq!(channel.queue.lock().spare_buffers(), 1);
        assert_eq!(channel.progress.borrow().acked, 1);

        write_and_sync(channel, &mut log, true, false).expect("sync");
        assert!(log.unsynced.is_empty());
        assert_eq!(log.synced_seq, 1);

        log.push(channel, vec![2u8; 10], 2, 1);
        log.write_pending(channel).expect("write");
        log.push(channel, vec![3u8; 5], 3, 1);
        log.fail(channel, "write", io::Error::from_raw_os_error(28));
        assert_eq!(log.len, log.synced_len);
        let rewrite: Vec<(Vec<u8>, u64)> = log
            .pending
            .iter()
            .map(|pending| (pending.bytes.clone(), pending.last_seq))
            .collect();
        assert_eq!(rewrite, vec![(vec![2u8; 10], 2), (vec![3u8; 5], 3)]);
        log.write_pending(channel).expect("rewrite");
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

    /// A retried sync of a failing log (with the lock held) accounts what it synced: a copy of
    /// the unsynced bytes left behind would carry the old segment's bytes across the rotation
    /// that follows, and the next error would rewrite them into the new segment, a misaligned
    /// frame that recovery cuts, with every acknowledged record after it.
    #[test]
    fn a_retried_sync_before_a_rotation_leaves_nothing_to_rewrite_in_the_next_segment() {
        let (dir, shared) = scratch_log("store-node-writer-rotate");
        let channel = shared.channel();
        let mut log = shared.log.lock();
        log.push(channel, vec![1u8; 100], 1, 1);
        log.write_pending(channel).expect("write");
        log.fail(channel, "fdatasync", io::Error::from_raw_os_error(5));
        // The writer's retry (persist): rewrite and sync with the lock held, then heal.
        write_and_sync(channel, &mut log, true, false).expect("retry");
        log.set_failed(channel, None);
        assert!(log.unsynced.is_empty());
        assert_eq!(log.synced_seq, 1);
        log.rotate(channel).expect("rotate");
        log.push(channel, vec![2u8; 10], 2, 1);
        write_and_sync(channel, &mut log, true, false).expect("sync");
        log.push(channel, vec![3u8; 5], 3, 1);
        log.write_pending(channel).expect("write");
        log.fail(channel, "fdatasync", io::Error::from_raw_os_error(5));
        log.write_pending(channel).expect("rewrite");
        let path = log.path.clone();
        drop(log);
        let file = std::fs::read(&path).expect("segment 2");
        assert_eq!(
            &file[FILE_HEADER_LEN..],
            [[2u8; 10].as_slice(), &[3u8; 5]].concat()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
