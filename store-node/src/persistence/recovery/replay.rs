//! Reading one file back: a snapshot, whose every frame must be whole and which must end with
//! its trailer, or a log segment, whose damaged tail is cut when it is the last one. Every
//! record read is merged into the recovered map by the store's merge rule.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::progress::RecoveryProgress;
use crate::persistence::cache::ReadAhead;
use crate::persistence::error::{corrupt, read_error, PersistenceError};
use crate::persistence::format::{
    FileHeader, FrameRead, FrameReader, Message, FILE_HEADER_LEN, SNAPSHOT_MAGIC, WAL_MAGIC,
};
use crate::store::record::merge;
use crate::store::Record;

/// A torn or corrupt tail cut off the last log segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment.
    pub path: PathBuf,
    /// The new length: the first byte that was not a valid frame.
    pub offset: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// What was wrong there.
    pub reason: String,
}

/// Every key's winning record so far.
pub(super) type RecordMap = HashMap<Bytes, Record, foldhash::fast::RandomState>;

/// What reading found so far.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) records_read: u64,
    pub(super) bytes_read: u64,
    pub(super) max_hlc: u64,
}

/// Merges `record` into `map` by the store's merge rule.
fn merge_into(map: &mut RecordMap, record: Record, now_ms: u64, forget_before_ms: u64) {
    let stored = map.get(&record.key).map(Record::view);
    // Every record read was checked whole when its frame was decoded.
    if let Ok(Some(merged)) = merge(stored.as_ref(), &record.view(), now_ms, forget_before_ms) {
        map.insert(merged.key.clone(), merged);
    }
}

/// An open file positioned after its header, its length, and the header or what is wrong
/// with it.
type Opened = (BufReader<ReadAhead>, u64, Result<FileHeader, String>);

/// Opens a file and reads its header.
fn open_with_header(path: &Path) -> Result<Opened, PersistenceError> {
    let file = File::open(path).map_err(read_error(path))?;
    let len = file.metadata().map_err(read_error(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, ReadAhead::new(file));
    if len < FILE_HEADER_LEN as u64 {
        return Ok((
            reader,
            len,
            Err(format!("file of {len} bytes is shorter than its header")),
        ));
    }
    let mut header = [0u8; FILE_HEADER_LEN];
    reader.read_exact(&mut header).map_err(read_error(path))?;
    Ok((reader, len, FileHeader::decode(&header)))
}

/// Checks that a header belongs where the file sits: its kind, this node, its name's
/// sequence.
fn check_header(
    header: &FileHeader,
    path: &Path,
    magic: [u8; 8],
    node_id: u32,
    seq: u64,
) -> Result<(), PersistenceError> {
    if header.magic != magic {
        return Err(corrupt(path, 0, "file magic does not match its name"));
    }
    if header.node_id != node_id {
        return Err(corrupt(
            path,
            0,
            format!(
                "written by node id {} but this directory belongs to node id {node_id}",
                header.node_id
            ),
        ));
    }
    if header.seq != seq {
        return Err(corrupt(
            path,
            0,
            format!(
                "header sequence {} does not match the file name",
                header.seq
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
/// Loads the snapshot for segment `seq`; returns its size.
pub(super) fn load_snapshot(
    path: &Path,
    seq: u64,
    node_id: u32,
    map: &mut RecordMap,
    stats: &mut Stats,
    progress: &RecoveryProgress,
    now_ms: u64,
    forget_before_ms: u64,
) -> Result<u64, PersistenceError> {
    let (reader, len, header) = open_with_header(path)?;
    let header = header.map_err(|reason| corrupt(path, 0, reason))?;
    check_header(&header, path, SNAPSHOT_MAGIC, node_id, seq)?;
    progress.add_bytes_read(FILE_HEADER_LEN as u64);
    let mut frames = FrameReader::new(reader, len - FILE_HEADER_LEN as u64);
    let mut offset = FILE_HEADER_LEN as u64;
    let mut count = 0u64;
    loop {
        match frames.next_frame().map_err(read_error(path))? {
            FrameRead::Frame(Message::SnapshotChunk { records }, size) => {
                for record in records {
                    count += 1;
                    stats.records_read += 1;
                    stats.max_hlc = stats.max_hlc.max(record.stamp().hlc);
                    merge_into(map, record, now_ms, forget_before_ms);
                }
                offset += size;
                progress.add_bytes_read(size);
            }
            FrameRead::Frame(Message::SnapshotEnd { seq: total }, size) => {
                if total != count {
                    return Err(corrupt(
                        path,
                        offset,
                        format!("trailer announces {total} records, {count} were read"),
                    ));
                }
                offset += size;
                if !matches!(
                    frames.next_frame().map_err(read_error(path))?,
                    FrameRead::End
                ) {
                    return Err(corrupt(path, offset, "bytes after the snapshot trailer"));
                }
                break;
            }
            FrameRead::Frame(message, _) => {
                return Err(corrupt(
                    path,
                    offset,
                    format!("unexpected {} message in a snapshot", message.name()),
                ))
            }
            FrameRead::End => {
                return Err(corrupt(path, offset, "snapshot ends without its trailer"))
            }
            FrameRead::Damaged(reason) => return Err(corrupt(path, offset, reason)),
        }
    }
    stats.bytes_read += len;
    Ok(len)
}

/// Replays one segment and returns the length kept; for the last one, a damaged tail is cut
/// and described.
#[allow(clippy::too_many_arguments)]
pub(super) fn replay_segment(
    path: &Path,
    seq: u64,
    is_last: bool,
    node_id: u32,
    map: &mut RecordMap,
    stats: &mut Stats,
    progress: &RecoveryProgress,
    now_ms: u64,
    forget_before_ms: u64,
) -> Result<(u64, Option<Truncation>), PersistenceError> {
    let (reader, len, header) = open_with_header(path)?;
    let header = match header {
        Ok(header) => header,
        // The header is written and synced before any record: a last segment whose header is
        // incomplete died while being created and holds nothing.
        Err(reason) if is_last && len <= FILE_HEADER_LEN as u64 => {
            drop(reader);
            fs::remove_file(path).map_err(|source| PersistenceError::Remove {
                path: path.to_path_buf(),
                source,
            })?;
            return Ok((
                0,
                Some(Truncation {
                    path: path.to_path_buf(),
                    offset: 0,
                    dropped_bytes: len,
                    reason,
                }),
            ));
        }
        Err(reason) => return Err(corrupt(path, 0, reason)),
    };
    check_header(&header, path, WAL_MAGIC, node_id, seq)?;
    progress.add_bytes_read(FILE_HEADER_LEN as u64);
    let mut frames = FrameReader::new(reader, len - FILE_HEADER_LEN as u64);
    let mut offset = FILE_HEADER_LEN as u64;
    let damage = loop {
        match frames.next_frame().map_err(read_error(path))? {
            FrameRead::Frame(Message::RepairRecords { records }, size) => {
                for record in records {
                    stats.records_read += 1;
                    stats.max_hlc = stats.max_hlc.max(record.stamp().hlc);
                    merge_into(map, record, now_ms, forget_before_ms);
                }
                offset += size;
                progress.add_bytes_read(size);
            }
            FrameRead::Frame(message, _) => {
                break Some(format!(
                    "unexpected {} message in a log segment",
                    message.name()
                ))
            }
            FrameRead::End => break None,
            FrameRead::Damaged(reason) => break Some(reason),
        }
    };
    stats.bytes_read += offset;
    let Some(reason) = damage else {
        return Ok((len, None));
    };
    if !is_last {
        return Err(corrupt(path, offset, reason));
    }
    let truncate = |source| PersistenceError::Truncate {
        path: path.to_path_buf(),
        offset,
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(truncate)?;
    file.set_len(offset).map_err(truncate)?;
    file.sync_all().map_err(truncate)?;
    tracing::warn!(
        file = %path.display(),
        offset,
        dropped_bytes = len - offset,
        reason = %reason,
        "truncated a torn or corrupt tail of the write-ahead log"
    );
    Ok((
        offset,
        Some(Truncation {
            path: path.to_path_buf(),
            offset,
            dropped_bytes: len - offset,
            reason,
        }),
    ))
}
