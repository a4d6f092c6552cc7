//! Recovery at start: check the data directory, load the newest snapshot, replay every later
//! log segment through the replication merge rule, truncate a torn tail of the last segment,
//! and hand back the records to load. Also the node id file and [`quarantine`].
//!
//! Damage rules: a bad frame in the *last* segment is a torn write (the process or the machine
//! died mid-append, and nothing after it was ever acknowledged as synced), so the segment is
//! cut there with a `warn!` naming the file and offset. Damage anywhere else (an older segment,
//! which was fdatasynced before the next one was created; a snapshot, which was fsynced before
//! its rename; a missing segment; the node id file) is [`PersistenceError::Corrupt`]: never a
//! panic, never silently empty.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::cache::ReadAhead;
use super::error::PersistenceError;
use super::format::{
    self, FileHeader, FileKind, FrameRead, FrameReader, FILE_HEADER_LEN, NODE_ID_FILE,
    SNAPSHOT_MAGIC, SNAPSHOT_TMP, WAL_MAGIC,
};
use crate::store::record::merge;
use crate::store::{Record, RecordState};

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

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<PathBuf>,
    /// Log segments replayed.
    pub segments: usize,
    /// Records read from the snapshot and the segments.
    pub records_read: u64,
    /// Records handed back to load (live ones and recent tombstones).
    pub records_loaded: usize,
    /// Live records dropped because they had expired.
    pub expired_dropped: u64,
    /// Tombstones dropped because they are older than the grace period.
    pub tombstones_dropped: u64,
    /// Bytes of snapshot and log read.
    pub bytes_read: u64,
    /// How long recovery took.
    pub duration: Duration,
    /// The greatest HLC among the records read: the node's clock must move past it before
    /// stamping new writes (the node id persists, so its stamps must keep increasing).
    pub max_hlc: u64,
    /// The torn tail that was cut, if any.
    pub truncated: Option<Truncation>,
}

/// The result of recovery: the records to load into the store, and the report.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Every key's winning record: live values not yet expired, and tombstones not older than
    /// the grace period (so a delete still wins over older values from peers).
    pub records: Vec<Record>,
    /// What was found.
    pub report: RecoveryReport,
}

/// How far recovery has got, for probes, `INFO` and `/v1/status` while the node loads: plain
/// atomics the recovering thread advances and anyone may read.
#[derive(Debug, Default)]
pub struct RecoveryProgress {
    phase: AtomicU8,
    bytes_total: AtomicU64,
    bytes_read: AtomicU64,
    records_total: AtomicU64,
    records_loaded: AtomicU64,
}

/// A phase of recovery ([`RecoveryProgress::phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPhase {
    /// Not started.
    Pending,
    /// Reading the snapshot and the log segments.
    Reading,
    /// Loading the recovered records into the store.
    Loading,
    /// Finished.
    Done,
}

impl RecoveryPhase {
    /// The spelling in `/v1/status` and INFO.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPhase::Pending => "pending",
            RecoveryPhase::Reading => "reading",
            RecoveryPhase::Loading => "loading",
            RecoveryPhase::Done => "done",
        }
    }
}

/// A copy of [`RecoveryProgress`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryProgressSnapshot {
    /// The phase.
    pub phase: RecoveryPhase,
    /// Bytes of snapshot and log to read (known once reading starts).
    pub bytes_total: u64,
    /// Bytes of snapshot and log read so far.
    pub bytes_read: u64,
    /// Records to load into the store (known once reading ends).
    pub records_total: u64,
    /// Records loaded so far.
    pub records_loaded: u64,
}

impl RecoveryProgress {
    /// Moves to `phase`.
    pub fn set_phase(&self, phase: RecoveryPhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Sets the number of records to load.
    pub fn set_records_total(&self, records: u64) {
        self.records_total.store(records, Ordering::Relaxed);
    }

    /// Counts `records` more records loaded.
    pub fn add_records_loaded(&self, records: u64) {
        self.records_loaded.fetch_add(records, Ordering::Relaxed);
    }

    fn start_reading(&self, bytes_total: u64) {
        self.bytes_total.store(bytes_total, Ordering::Relaxed);
        self.bytes_read.store(0, Ordering::Relaxed);
        self.records_total.store(0, Ordering::Relaxed);
        self.records_loaded.store(0, Ordering::Relaxed);
        self.set_phase(RecoveryPhase::Reading);
    }

    fn add_bytes_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> RecoveryProgressSnapshot {
        RecoveryProgressSnapshot {
            phase: match self.phase.load(Ordering::Relaxed) {
                0 => RecoveryPhase::Pending,
                1 => RecoveryPhase::Reading,
                2 => RecoveryPhase::Loading,
                _ => RecoveryPhase::Done,
            },
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            records_total: self.records_total.load(Ordering::Relaxed),
            records_loaded: self.records_loaded.load(Ordering::Relaxed),
        }
    }
}

impl RecoveryProgressSnapshot {
    /// One line for `/readyz` and logs, e.g. `recovering from disc: read 52428800 of
    /// 104857600 bytes`.
    pub fn describe(&self) -> String {
        match self.phase {
            RecoveryPhase::Pending => "recovering from disc: opening the data directory".into(),
            RecoveryPhase::Reading => format!(
                "recovering from disc: read {} of {} bytes",
                self.bytes_read, self.bytes_total
            ),
            RecoveryPhase::Loading => format!(
                "recovering from disc: loaded {} of {} records",
                self.records_loaded, self.records_total
            ),
            RecoveryPhase::Done => "recovered from disc".into(),
        }
    }
}

/// Directory state recovery leaves for the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// The segment the writer creates next.
    pub next_segment: u64,
    /// Bytes of log segments kept (replayed after the snapshot).
    pub log_bytes: u64,
    /// Size of the snapshot loaded (0 without one).
    pub snapshot_bytes: u64,
}

type RecordMap = HashMap<Bytes, Record, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Listing {
    segments: BTreeMap<u64, PathBuf>,
    snapshots: BTreeMap<u64, PathBuf>,
    tmp: Option<PathBuf>,
}

impl Listing {
    fn has_data(&self) -> bool {
        !self.segments.is_empty() || !self.snapshots.is_empty()
    }
}

fn list(dir: &Path) -> Result<Listing, PersistenceError> {
    let read_dir = |source| PersistenceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        match format::classify(name) {
            FileKind::Segment(seq) => {
                listing.segments.insert(seq, entry.path());
            }
            FileKind::Snapshot(seq) => {
                listing.snapshots.insert(seq, entry.path());
            }
            FileKind::SnapshotTmp => listing.tmp = Some(entry.path()),
            FileKind::Other => {}
        }
    }
    Ok(listing)
}

/// fsyncs a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistenceError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| PersistenceError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> PersistenceError {
    PersistenceError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn read_error(path: &Path) -> impl Fn(io::Error) -> PersistenceError + '_ {
    move |source| PersistenceError::ReadFile {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the node id, or creates it for a directory without data. A directory holding data
/// without a valid node id is damaged.
pub(crate) fn load_node_id(dir: &Path) -> Result<u32, PersistenceError> {
    let path = dir.join(NODE_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .map_err(|_| corrupt(&path, 0, format!("invalid node id {:?}", text.trim()))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if list(dir)?.has_data() {
                return Err(corrupt(&path, 0, "node id file missing beside log files"));
            }
            let node_id = crate::replication::generate_node_id();
            let tmp = dir.join(format!("{NODE_ID_FILE}.tmp"));
            let write = |source| PersistenceError::WriteFile {
                path: tmp.clone(),
                source,
            };
            let mut file = File::create(&tmp).map_err(write)?;
            file.write_all(format!("{node_id}\n").as_bytes())
                .map_err(write)?;
            file.sync_all().map_err(write)?;
            fs::rename(&tmp, &path).map_err(|source| PersistenceError::Remove {
                path: tmp.clone(),
                source,
            })?;
            sync_dir(dir)?;
            tracing::info!(dir = %dir.display(), node_id, "created node id");
            Ok(node_id)
        }
        Err(source) => Err(PersistenceError::ReadFile { path, source }),
    }
}

#[derive(Debug, Default)]
struct Stats {
    records_read: u64,
    bytes_read: u64,
    max_hlc: u64,
}

fn merge_into(map: &mut RecordMap, record: Record, now_ms: u64, forget_before_ms: u64) {
    let stored = map.get(&record.key);
    if let Some(merged) = merge(stored, &record, now_ms, forget_before_ms) {
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
fn load_snapshot(
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
            FrameRead::Frame(
                crate::replication::wire::Message::SnapshotChunk { records },
                size,
            ) => {
                for record in records {
                    count += 1;
                    stats.records_read += 1;
                    stats.max_hlc = stats.max_hlc.max(record.stamp.hlc);
                    merge_into(map, record, now_ms, forget_before_ms);
                }
                offset += size;
                progress.add_bytes_read(size);
            }
            FrameRead::Frame(
                crate::replication::wire::Message::SnapshotEnd { seq: total },
                size,
            ) => {
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

/// Replays one segment; for the last one, a damaged tail is cut and described.
#[allow(clippy::too_many_arguments)]
fn replay_segment(
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
            FrameRead::Frame(
                crate::replication::wire::Message::RepairRecords { records },
                size,
            ) => {
                for record in records {
                    stats.records_read += 1;
                    stats.max_hlc = stats.max_hlc.max(record.stamp.hlc);
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

/// Recovers the directory (which the caller has locked): see the module docs.
pub(crate) fn recover(
    dir: &Path,
    node_id: u32,
    progress: &RecoveryProgress,
    now_ms: u64,
    forget_before_ms: u64,
) -> Result<(Recovered, Layout), PersistenceError> {
    let started = Instant::now();
    let listing = list(dir)?;
    let mut map = RecordMap::default();
    let mut stats = Stats::default();
    let mut report = RecoveryReport::default();

    let snapshot = listing.snapshots.iter().next_back();
    let first = match snapshot {
        Some((seq, _)) => *seq,
        None => listing.segments.keys().next().copied().unwrap_or(1),
    };
    let replay: Vec<(u64, &PathBuf)> = listing
        .segments
        .range(first..)
        .map(|(seq, path)| (*seq, path))
        .collect();
    // Only for progress: a file that cannot be read fails below with its own error.
    let bytes_total = snapshot
        .map(|(_, path)| path)
        .into_iter()
        .chain(replay.iter().map(|(_, path)| *path))
        .filter_map(|path| fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    progress.start_reading(bytes_total);
    let mut snapshot_bytes = 0;
    if let Some((seq, path)) = snapshot {
        snapshot_bytes = load_snapshot(
            path,
            *seq,
            node_id,
            &mut map,
            &mut stats,
            progress,
            now_ms,
            forget_before_ms,
        )?;
        report.snapshot = Some(path.clone());
    }
    for (index, (seq, _)) in replay.iter().enumerate() {
        let expected = first + index as u64;
        if *seq != expected {
            return Err(corrupt(
                &dir.join(format::segment_name(expected)),
                0,
                "log segment missing",
            ));
        }
    }
    if snapshot.is_some() && replay.is_empty() {
        return Err(corrupt(
            &dir.join(format::segment_name(first)),
            0,
            "log segment started with the snapshot is missing",
        ));
    }
    let mut log_bytes = 0;
    let mut next_segment = first;
    for (index, (seq, path)) in replay.iter().enumerate() {
        let is_last = index + 1 == replay.len();
        let (kept, truncation) = replay_segment(
            path,
            *seq,
            is_last,
            node_id,
            &mut map,
            &mut stats,
            progress,
            now_ms,
            forget_before_ms,
        )?;
        log_bytes += kept;
        report.segments += 1;
        // A removed (never-written) last segment's number is reused.
        next_segment = if kept == 0 && truncation.is_some() {
            *seq
        } else {
            seq + 1
        };
        report.truncated = truncation;
    }

    // Leftovers of an interrupted snapshot or compaction.
    let mut removed = false;
    let remove = |path: &Path| -> Result<(), PersistenceError> {
        fs::remove_file(path).map_err(|source| PersistenceError::Remove {
            path: path.to_path_buf(),
            source,
        })
    };
    if let Some(tmp) = &listing.tmp {
        remove(tmp)?;
        removed = true;
    }
    for (seq, path) in &listing.snapshots {
        if Some(*seq) != snapshot.map(|(seq, _)| *seq) {
            remove(path)?;
            removed = true;
        }
    }
    for (_, path) in listing.segments.range(..first) {
        remove(path)?;
        removed = true;
    }
    if removed || report.truncated.is_some() {
        sync_dir(dir)?;
    }

    let mut records = Vec::with_capacity(map.len());
    for (_, record) in map {
        let record = match record.state {
            RecordState::Live {
                expire_at: Some(at),
                ..
            } if at <= now_ms => {
                report.expired_dropped += 1;
                continue;
            }
            RecordState::Tombstone { deleted_at_ms } if deleted_at_ms < forget_before_ms => {
                report.tombstones_dropped += 1;
                continue;
            }
            _ => record,
        };
        records.push(record);
    }
    report.records_read = stats.records_read;
    report.bytes_read = stats.bytes_read;
    report.max_hlc = stats.max_hlc;
    report.records_loaded = records.len();
    report.duration = started.elapsed();
    tracing::info!(
        dir = %dir.display(),
        records_read = report.records_read,
        records_loaded = report.records_loaded,
        bytes_read = report.bytes_read,
        segments = report.segments,
        duration_ms = report.duration.as_millis() as u64,
        "recovered the data directory"
    );
    Ok((
        Recovered { records, report },
        Layout {
            next_segment,
            log_bytes,
            snapshot_bytes,
        },
    ))
}

/// Moves every snapshot and log segment (and an invalid node id file) of `data_dir` into
/// `<data-dir>/damaged-<unix_secs>/` so the node can start empty and re-sync from its peers.
/// A valid node id file stays: the node keeps its identity. Returns the quarantine directory.
/// Call it only while no [`super::Persistence`] has the directory open.
pub fn quarantine(data_dir: &Path, unix_secs: u64) -> Result<PathBuf, PersistenceError> {
    let target = data_dir.join(format!("{}{unix_secs}", format::DAMAGED_PREFIX));
    fs::create_dir_all(&target).map_err(|source| PersistenceError::CreateDir {
        path: target.clone(),
        source,
    })?;
    let read_dir = |source| PersistenceError::ReadDir {
        path: data_dir.to_path_buf(),
        source,
    };
    let node_id_valid = fs::read_to_string(data_dir.join(NODE_ID_FILE))
        .ok()
        .is_some_and(|text| text.trim().parse::<u32>().is_ok());
    let mut moved = 0usize;
    for entry in fs::read_dir(data_dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let ours = match format::classify(name) {
            FileKind::Other => name == NODE_ID_FILE && !node_id_valid,
            _ => true,
        };
        if ours {
            fs::rename(entry.path(), target.join(name)).map_err(|source| {
                PersistenceError::Remove {
                    path: entry.path(),
                    source,
                }
            })?;
            moved += 1;
        }
    }
    sync_dir(&target)?;
    sync_dir(data_dir)?;
    tracing::warn!(
        dir = %data_dir.display(),
        quarantine = %target.display(),
        files = moved,
        "moved damaged persistence files aside; starting empty to re-sync from peers"
    );
    Ok(target)
}

/// The snapshot tmp file path.
pub(crate) fn snapshot_tmp(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_TMP)
}

/// Total bytes of snapshots and segments in `dir` (for the disc gauge).
pub(crate) fn disc_bytes(dir: &Path) -> Result<u64, PersistenceError> {
    let read_dir = |source| PersistenceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let counted = entry
            .file_name()
            .to_str()
            .is_some_and(|name| format::classify(name) != FileKind::Other);
        if counted {
            total += entry.metadata().map_err(read_dir)?.len();
        }
    }
    Ok(total)
}
