//! Persistence failures, one variant per step that can fail, so the log line and the client
//! error say what went wrong where.

use std::io;
use std::path::{Path, PathBuf};

/// Persistence failures.
///
/// [`PersistenceError::is_damage`] tells apart the errors that mean "the data directory cannot
/// be trusted" (refuse to serve, or [`super::quarantine`] when peers can re-sync this node)
/// from operational ones.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The data directory could not be created.
    #[error("failed to create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The data directory could not be listed.
    #[error("failed to read data directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another process holds the directory lock.
    #[error("data directory {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file could not be opened, read or its metadata read.
    #[error("failed to read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A snapshot, a log segment other than the last, the node id file or the set of segments
    /// is damaged. The node must not serve from this directory as it is.
    #[error("corrupt {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file (or the directory, for a missing segment).
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A torn log tail could not be truncated.
    #[error("failed to truncate {path} at byte {offset}: {source}")]
    Truncate {
        /// The segment.
        path: PathBuf,
        /// Where it was cut.
        offset: u64,
        /// The cause.
        source: io::Error,
    },
    /// A file could not be created, written or synced.
    #[error("failed to write {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file could not be renamed or removed.
    #[error("failed to move or remove {path}: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("failed to start the log writer thread: {0}")]
    Spawn(io::Error),
    /// A record is larger than the frame limit.
    #[error("record of key {key:?} does not fit a log frame: {reason}")]
    TooLarge {
        /// The key (lossy UTF-8).
        key: String,
        /// The encoder's reason.
        reason: String,
    },
    /// The log cannot be written (disc full, I/O error); writes must be refused until it
    /// recovers. The text starts with Redis's `MISCONF` error code so the server can return it
    /// as is.
    #[error("MISCONF Errors writing to the write-ahead log: {reason}")]
    Unavailable {
        /// The last I/O error.
        reason: String,
    },
    /// A snapshot is already being written.
    #[error("a snapshot is already running")]
    SnapshotRunning,
    /// The writer was stopped (shutdown).
    #[error("the log writer is stopped")]
    Stopped,
}

impl PersistenceError {
    /// Whether the data directory cannot be trusted: the caller refuses to serve, or moves
    /// the files aside with [`super::quarantine`] and starts empty when peers can re-sync it.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            PersistenceError::Corrupt { .. }
                | PersistenceError::ReadDir { .. }
                | PersistenceError::ReadFile { .. }
        )
    }
}

/// A [`PersistenceError::Corrupt`] at `offset` of `path`.
pub(super) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> PersistenceError {
    PersistenceError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Maps an I/O error reading `path` to [`PersistenceError::ReadFile`].
pub(super) fn read_error(path: &Path) -> impl Fn(io::Error) -> PersistenceError + '_ {
    move |source| PersistenceError::ReadFile {
        path: path.to_path_buf(),
        source,
    }
}
