//! Writing a snapshot: the keyspace, read through the caller's chunked iterator, into
//! `snapshot.tmp`, fsynced, renamed to `snapshot-<seq>.snap` and the directory fsynced.
//!
//! The snapshot is *fuzzy*: writes keep flowing while it is taken, so a key may appear in its
//! old or new state. That is correct because every record is also in the log segment `seq`
//! started just before the dump, and replay merges by last-writer-wins, which is idempotent and
//! order-insensitive: whatever the snapshot holds for a key, replaying the later segments ends at
//! the newest version.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::PersistenceError;
use super::format::{self, FileHeader, SNAPSHOT_MAGIC};
use super::recovery::{snapshot_tmp, sync_dir};
use crate::replication::{Record, RecordState};

/// The caller's chunked iterator over the keyspace (see `Persistence::snapshot`).
pub(crate) type ChunkSource<'a> =
    dyn FnMut(Option<&[u8]>, usize) -> (Vec<Record>, Option<Vec<u8>>) + 'a;

/// Records asked from the source per call.
pub(crate) const CHUNK_RECORDS: usize = 1024;

/// Writes the snapshot for segment `seq`; returns its path, size and record count.
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
    let file = File::create(&tmp).map_err(write)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(
        &FileHeader {
            magic: SNAPSHOT_MAGIC,
            node_id,
            seq,
        }
        .encode(),
    )
    .map_err(write)?;
    let mut total = 0u64;
    let mut frame: Vec<Record> = Vec::new();
    let mut frame_size = 0usize;
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let (records, next) = chunk(cursor.as_deref(), CHUNK_RECORDS);
        for record in records {
            // Expired sessions would be dropped at load anyway; compaction drops them now.
            if let RecordState::Live {
                expire_at: Some(at),
                ..
            } = record.state
            {
                if at <= now_ms {
                    continue;
                }
            }
            frame_size += record.size();
            frame.push(record);
            total += 1;
            if frame_size >= frame_bytes {
                let bytes =
                    format::encode_snapshot_chunk(std::mem::take(&mut frame)).map_err(encode)?;
                out.write_all(&bytes).map_err(write)?;
                frame_size = 0;
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if !frame.is_empty() {
        let bytes = format::encode_snapshot_chunk(frame).map_err(encode)?;
        out.write_all(&bytes).map_err(write)?;
    }
    out.write_all(&format::encode_snapshot_end(total).map_err(encode)?)
        .map_err(write)?;
    let file = out
        .into_inner()
        .map_err(|error| write(error.into_error()))?;
    file.sync_all().map_err(write)?;
    let size = file.metadata().map_err(write)?.len();
    drop(file);
    let path = dir.join(format::snapshot_name(seq));
    fs::rename(&tmp, &path).map_err(|source| PersistenceError::Remove {
        path: tmp.clone(),
        source,
    })?;
    sync_dir(dir)?;
    Ok((path, size, total))
}
