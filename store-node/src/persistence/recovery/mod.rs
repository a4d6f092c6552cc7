//! Recovery at start: check the data directory, load the newest snapshot, replay every later
//! log segment through the store's merge rule, truncate a torn tail of the last segment, and
//! hand back the records to load. `replay` reads each file; [`RecoveryProgress`] is what a
//! loading node reports meanwhile.
//!
//! Damage rules: a bad frame in the *last* segment is a torn write (the process or the machine died
//! mid-append, and nothing after it was ever acknowledged as synced), so the segment is cut there
//! with a `warn!` naming the file and offset. Damage anywhere else (an older segment, which was
//! fdatasynced before the next one was created; a snapshot, which was fsynced before its rename; a
//! missing segment; the node id file, read by `directory`) is [`PersistenceError::Corrupt`]:
//! never a panic, never silently empty.

mod progress;
mod replay;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use progress::{RecoveryPhase, RecoveryProgress, RecoveryProgressSnapshot};
pub use replay::Truncation;

use super::directory::{list, sync_dir};
use super::error::{corrupt, PersistenceError};
use super::format;
use crate::store::Record;
use replay::{RecordMap, Stats};

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
    let to_replay: Vec<(u64, &PathBuf)> = listing
        .segments
        .range(first..)
        .map(|(seq, path)| (*seq, path))
        .collect();
    // Only for progress: a file that cannot be read fails below with its own error.
    let bytes_total = snapshot
        .map(|(_, path)| path)
        .into_iter()
        .chain(to_replay.iter().map(|(_, path)| *path))
        .filter_map(|path| fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    progress.start_reading(bytes_total);
    let mut snapshot_bytes = 0;
    if let Some((seq, path)) = snapshot {
        snapshot_bytes = replay::load_snapshot(
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
    for (index, (seq, _)) in to_replay.iter().enumerate() {
        let expected = first + index as u64;
        if *seq != expected {
            return Err(corrupt(
                &dir.join(format::segment_name(expected)),
                0,
                "log segment missing",
            ));
        }
    }
    if snapshot.is_some() && to_replay.is_empty() {
        return Err(corrupt(
            &dir.join(format::segment_name(first)),
            0,
            "log segment started with the snapshot is missing",
        ));
    }
    let mut log_bytes = 0;
    let mut next_segment = first;
    for (index, (seq, path)) in to_replay.iter().enumerate() {
        let is_last = index + 1 == to_replay.len();
        let (kept, truncation) = replay::replay_segment(
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
        if record.expire_at().is_some_and(|at| at <= now_ms) {
            report.expired_dropped += 1;
            continue;
        }
        if record
            .deleted_at()
            .is_some_and(|deleted_at| deleted_at < forget_before_ms)
        {
            report.tombstones_dropped += 1;
            continue;
        }
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
