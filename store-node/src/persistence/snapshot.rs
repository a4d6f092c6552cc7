//! Writing a snapshot: the keyspace, read through the caller's chunked iterator, into
//! `snapshot.tmp`, fsynced, renamed to `snapshot-<seq>.snap` and the directory fsynced.
//!
//! The snapshot is *fuzzy*: writes keep flowing while it is taken, so a key may appear in its
//! old or new state. That is correct because every record is also in the log segment `seq`
//! started just before the dump, and replay merges by last-writer-wins, which is idempotent and
//! order-insensitive: whatever the snapshot holds for a key, replaying the later segments ends at
//! the newest version.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::PersistenceError;
use super::format::{self, FileHeader, SNAPSHOT_MAGIC};
use super::recovery::{snapshot_tmp, sync_dir};
use crate::replication::wire::{RecordsFrame, RecordsMessage};
use crate::store::{RecordView, StateView};

/// The caller's chunked iterator over the keyspace (see `Persistence::snapshot`): visits up
/// to `max` records after the cursor and returns the next cursor (`None` = done).
pub(crate) type ChunkSource<'a> =
    dyn FnMut(Option<&[u8]>, usize, &mut dyn FnMut(&RecordView<'_>)) -> Option<Vec<u8>> + 'a;

/// Records asked from the source per call. The source visits them under a lock of the
/// store (a shard's), which the encoding of each record into the frame holds too: 256 records
/// of 1 KiB keep that under a few tens of microseconds.
pub(crate) const CHUNK_RECORDS: usize = 256;

/// A frame is sealed as soon as it reaches this size, even within one call of the source.
const FRAME_CAP_BYTES: usize = 64 << 20;

/// Every this many bytes written, the snapshot so far is written back and dropped from the
/// page cache, so a snapshot of a large store keeps only this much of itself cached.
const WRITE_BACK_BYTES: u64 = 8 << 20;

/// Writes the snapshot for segment `seq`; returns its path, size and record count. Records
/// are encoded straight from the source's views into one reused buffer, in frames of about
/// `frame_bytes`, which is written out whenever it holds that much.
pub(crate) fn write_snapshot(
    dir: &Path,
    node_id: u32,
    seq: u64,
    now_ms: u64,
    frame_bytes: usize,
    chunk: &mut ChunkSource<'_>,
) -> Result<(PathBuf, u64, u64), PersistenceError> {
    let tmp = snapshot_tmp(dir);
    let write = |source| PersistenceError::WriteFile {
        path: tmp.clone(),
        source,
    };
    let encode = |error: crate::replication::wire::WireError| PersistenceError::WriteFile {
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
            if let StateView::Live {
                expire_at: Some(at),
                ..
            } = record.state
            {
                if at <= now_ms {
                    return;
                }
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
                super::cache::write_back_and_drop(&file, dropped, written);
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
    super::cache::drop_cached(&file, 0, size);
    drop(file);
    let path = dir.join(format::snapshot_name(seq));
    fs::rename(&tmp, &path).map_err(|source| PersistenceError::Remove {
        path: tmp.clone(),
        source,
    })?;
    sync_dir(dir)?;
    Ok((path, size, total))
}
