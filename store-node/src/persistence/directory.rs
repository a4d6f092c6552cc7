//! The data directory as a whole: the lock that keeps a second process out, the listing of
//! its files by kind, the node id file (the node's identity across restarts), the fsyncs of
//! the directory that make creations, renames and removals durable, the disc gauge, and the
//! quarantine of damaged files.
//!
//! The node id is the origin of every stamp the node writes and is in every file's header
//! (recovery checks it), so a directory keeps its id for good; a fresh directory records the
//! id the caller picked for it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{corrupt, PersistenceError};
use super::format::{self, FileKind, LOCK_FILE, NODE_ID_FILE};

/// Takes the directory lock, held for the lifetime of the returned file: two processes on one
/// directory would interleave segments.
pub(super) fn lock(dir: &Path) -> Result<File, PersistenceError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PersistenceError::ReadFile {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(PersistenceError::Locked { path }),
        Err(std::fs::TryLockError::Error(source)) => {
            Err(PersistenceError::ReadFile { path, source })
        }
    }
}

/// The snapshots and log segments in the directory, by sequence, and a leftover snapshot
/// being written.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// `wal-<seq>.log` files.
    pub(super) segments: BTreeMap<u64, PathBuf>,
    /// `snapshot-<seq>.snap` files.
    pub(super) snapshots: BTreeMap<u64, PathBuf>,
    /// `snapshot.tmp`, left by a snapshot that did not finish.
    pub(super) tmp: Option<PathBuf>,
}

impl Listing {
    /// Whether the directory holds any snapshot or log segment.
    fn has_data(&self) -> bool {
        !self.segments.is_empty() || !self.snapshots.is_empty()
    }
}

/// Lists the directory's snapshots and log segments.
pub(super) fn list(dir: &Path) -> Result<Listing, PersistenceError> {
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
pub(super) fn sync_dir(dir: &Path) -> Result<(), PersistenceError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| PersistenceError::WriteFile {
            path: dir.to_path_buf(),
            source,
        })
}

/// Reads the node id, or records `fresh_node_id` for a directory without data. A directory
/// holding data without a valid node id is damaged.
pub(super) fn load_node_id(dir: &Path, fresh_node_id: u32) -> Result<u32, PersistenceError> {
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
            let node_id = fresh_node_id;
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

/// Total bytes of snapshots and segments in `dir` (for the disc gauge).
pub(super) fn disc_bytes(dir: &Path) -> Result<u64, PersistenceError> {
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
