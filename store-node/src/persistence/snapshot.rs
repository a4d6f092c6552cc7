//! Snapshots, which bound the log: when one is due ([`Persistence::needs_snapshot`]), taking
//! it ([`Persistence::snapshot`]: start a new log segment, write the keyspace, read through the
//! caller's chunked iterator, into `snapshot.tmp`, fsync it, rename it to
//! `snapshot-<seq>.snap` and fsync the directory), and deleting the files it replaces.
//!
//! The snapshot is *fuzzy*: writes keep flowing while it is taken, so a key may appear in its
//! old or new state. That is correct because every record is also in the log segment `seq`
//! started just before the dump, and replay merges by last-writer-wins, which is idempotent and
//! order-insensitive: whatever the snapshot holds for a key, replaying the later segments ends at
//! the newest version.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::cache;
use super::directory::sync_dir;
use super::error::PersistenceError;
use super::format::{
    self, FileHeader, FileKind, RecordsFrame, RecordsMessage, WireError, SNAPSHOT_MAGIC,
    SNAPSHOT_TMP,
};
use super::handle::Persistence;
use crate::store::{unix_ms, RecordView};

/// What a snapshot wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The snapshot file.
    pub path: PathBuf,
    /// The first log segment replayed after it.
    pub segment: u64,
    /// Records written (expired ones are skipped).
    pub records: u64,
    /// File size.
    pub bytes: u64,
    /// Older files removed.
    pub removed_files: usize,
    /// How long it took.
    pub duration: Duration,
}

impl Persistence {
    /// Whether the log since the last snapshot exceeds the compaction threshold and no
    /// snapshot is running: the caller then runs [`Persistence::snapshot`] (on a blocking
    /// thread).
    pub fn needs_snapshot(&self) -> bool {
        let metrics = self.shared.channel().metrics();
        let log = metrics.log_bytes_since_snapshot.load(Ordering::Relaxed);
        let live = metrics.snapshot_bytes.load(Ordering::Relaxed);
        let threshold = self
            .config
            .compaction_min_bytes
            .max((live as f64 * self.config.compaction_ratio) as u64);
        log > threshold && !self.snapshot_running.is_locked()
    }

    /// Takes a snapshot and deletes the log it replaces. `chunk(after, max)` returns up to
    /// `max` records after the opaque cursor (`None` = from the start) and the next cursor
    /// (`None` = done), the shape of the chunks a replica serves a peer's snapshot; every key
    /// present for the whole dump must come out at least once. Blocking: run it on a blocking
    /// thread. Writes continue meanwhile.
    pub fn snapshot(
        &self,
        mut chunk: impl FnMut(Option<&[u8]>, usize, &mut dyn FnMut(&RecordView<'_>)) -> Option<Vec<u8>>,
    ) -> Result<SnapshotReport, PersistenceError> {
        let Some(_running) = self.snapshot_running.try_lock() else {
            return Err(PersistenceError::SnapshotRunning);
        };
        let started = Instant::now();
        let dir = &self.config.data_dir;
        let segment = self.shared.channel().rotate()?;
        let (path, bytes, records) = write_snapshot(
            dir,
            self.node_id,
            segment,
            unix_ms(),
            self.config.snapshot_frame_bytes,
            &mut chunk,
        )?;

        // Everything before `segment` is now in the snapshot.
        let (removed_files, removed_bytes) = remove_replaced(dir, segment)?;

        let metrics = self.shared.channel().metrics();
        metrics.snapshot_bytes.store(bytes, Ordering::Relaxed);
        metrics.disc_bytes.fetch_add(bytes, Ordering::Relaxed);
        let _ = metrics
            .disc_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
                Some(value.saturating_sub(removed_bytes))
            });
        let duration = started.elapsed();
        metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        metrics
            .last_snapshot_unix_ms
            .store(unix_ms(), Ordering::Relaxed);
        metrics
            .last_snapshot_duration_ms
            .store(duration.as_millis() as u64, Ordering::Relaxed);
        tracing::info!(
            snapshot = %path.display(),
            segment,
            records,
            bytes,
            removed_files,
            duration_ms = duration.as_millis() as u64,
            "snapshot written"
        );
        Ok(SnapshotReport {
            path,
            segment,
            records,
            bytes,
            removed_files,
            duration,
        })
    }
}

/// The caller's chunked iterator over the keyspace (see [`Persistence::snapshot`]): visits up
/// to `max` records after the cursor and returns the next cursor (`None` = done).
type ChunkSource<'a> =
    dyn FnMut(Option<&[u8]>, usize, &mut dyn FnMut(&RecordView<'_>)) -> Option<Vec<u8>> + 'a;

/// Records asked from the source per call. The source visits them under a lock of the
/// store (a shard's), which the encoding of each record into the frame holds too: 256 records
/// of 1 KiB keep that under a few tens of microseconds.
const CHUNK_RECORDS: usize = 256;

/// A frame is sealed as soon as it reaches this size, even within one call of the source.
const FRAME_CAP_BYTES: usize = 64 << 20;

/// Every this many bytes written, the snapshot so far is written back and dropped from the
/// page cache, so a snapshot of a large store keeps only this much of itself cached.
const WRITE_BACK_BYTES: u64 = 8 << 20;

/// Writes the snapshot for segment `seq`; returns its path, size and record count. Records
/// are encoded straight from the source's views into one reused buffer, in frames of about
/// `frame_bytes`, which is written out whenever it holds that much.
fn write_snapshot(
    dir: &Path,
    node_id: u32,
    seq: u64,
    now_ms: u64,
    frame_bytes: usize,
    chunk: &mut ChunkSource<'_>,
) -> Result<(PathBuf, u64, u64), PersistenceError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let write = |source| PersistenceError::WriteFile {
        path: tmp.clone(),
        source,
    };
    let encode = |error: WireError| PersistenceError::WriteFile {
        path: tmp.clone(),
        source: std::io::Error::other(error.to_string()),
    };
    let mut file = File::create(&tmp).map_err(write)?;
    let mut out: Vec<u8> = Vec::with_capacity(frame_bytes.saturating_mul(2));
    out.extend_from_slice(
        &FileHeader {
            magic: SNAPSHOT_MAGIC,
            node_id,
            seq,
        }
        .encode(),
    );
    let mut total = 0u64;
    // Bytes in the file, and how many of them were written back and dropped from the cache.
    let (mut written, mut dropped) = (0u64, 0u64);
    let mut frame = RecordsFrame::begin(&mut out, RecordsMessage::SnapshotChunk);
    let mut failed = None;
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let next = chunk(cursor.as_deref(), CHUNK_RECORDS, &mut |record| {
            // Expired sessions would be dropped at load anyway; compaction drops them now.
            if record.header.expire_at.is_some_and(|at| at <= now_ms) {
                return;
            }
            frame.push(&mut out, record);
            total += 1;
            if frame.len(&out) >= FRAME_CAP_BYTES {
                // Large records: sealed here, written once the source returns (and its lock
                // is released). Frames are otherwise sealed outside the source's lock.
                if let Err(error) = frame.finish(&mut out, u32::MAX as usize) {
                    failed.get_or_insert(error);
                }
                frame = RecordsFrame::begin(&mut out, RecordsMessage::SnapshotChunk);
            }
        });
        if let Some(error) = failed.take() {
            return Err(encode(error));
        }
        if out.len() >= frame_bytes {
            if frame.is_empty() {
                frame.cancel(&mut out);
            } else {
                frame.finish(&mut out, u32::MAX as usize).map_err(encode)?;
            }
            file.write_all(&out).map_err(write)?;
            written += out.len() as u64;
            if written - dropped >= WRITE_BACK_BYTES {
                cache::write_back_and_drop(&file, dropped, written);
                dropped = written;
            }
            out.clear();
            frame = RecordsFrame::begin(&mut out, RecordsMessage::SnapshotChunk);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if frame.is_empty() {
        frame.cancel(&mut out);
    } else {
        frame.finish(&mut out, u32::MAX as usize).map_err(encode)?;
    }
    out.extend_from_slice(&format::encode_snapshot_end(total).map_err(encode)?);
    file.write_all(&out).map_err(write)?;
    file.sync_all().map_err(write)?;
    let size = file.metadata().map_err(write)?.len();
    cache::drop_cached(&file, 0, size);
    drop(file);
    let path = dir.join(format::snapshot_name(seq));
    fs::rename(&tmp, &path).map_err(|source| PersistenceError::Remove {
        path: tmp.clone(),
        source,
    })?;
    sync_dir(dir)?;
    Ok((path, size, total))
}

/// Deletes the snapshots and log segments older than segment `segment`, which a snapshot for
/// `segment` replaces, and fsyncs the directory; returns how many files and bytes went.
fn remove_replaced(dir: &Path, segment: u64) -> Result<(usize, u64), PersistenceError> {
    let mut removed_files = 0;
    let mut removed_bytes = 0;
    let read_dir = |source| PersistenceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name();
        let doomed = match name.to_str().map(format::classify) {
            Some(FileKind::Segment(seq)) => seq < segment,
            Some(FileKind::Snapshot(seq)) => seq < segment,
            _ => false,
        };
        if doomed {
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            fs::remove_file(entry.path()).map_err(|source| PersistenceError::Remove {
                path: entry.path(),
                source,
            })?;
            removed_files += 1;
            removed_bytes += size;
        }
    }
    sync_dir(dir)?;
    Ok((removed_files, removed_bytes))
}
