//! Disc mode: a write-ahead log of replication [`Record`]s with group commit, periodic fuzzy
//! snapshots that bound the log, and recovery at start (DESIGN.md §4, issue 4,
//! docs/persistence.md).
//!
//! What is logged is the whole state of a key after a write, stamped, exactly the unit that
//! replication ships (local writes and records applied from peers alike). Records merge by
//! last-writer-wins ([`crate::store::record::merge`]), so replay is idempotent and
//! order-insensitive. That makes a fuzzy snapshot correct: start a new log segment, dump the
//! keyspace through the store's chunked iterator while writes go on, fsync and rename it, then
//! delete the older segments. Recovery loads the newest snapshot and merges every later segment.
//!
//! Why not fjall or redb: the whole keyspace already lives in RAM; an LSM tree or B-tree would
//! keep a second, indexed copy with its own log, compaction and write amplification, to answer
//! reads nobody makes (reads are served from memory). An append-only log of idempotent records
//! plus snapshots (Redis's AOF + RDB) is the minimal durable structure for an in-memory store.
//!
//! Directory layout (`--data-dir`): `node-id` (the node keeps its identity across restarts),
//! `LOCK` (held while open), `wal-<seq>.log` segments, `snapshot-<seq>.snap` (holds everything
//! before segment `seq`), a transient `snapshot.tmp`, and `damaged-<unix-time>/` quarantines.
//! The file format is in [`format`].
//!
//! Contract with the caller (the store): append a record *after* it is applied and visible in
//! the store. Then a record in a segment older than a snapshot was in the store before the
//! snapshot's dump began, so deleting that segment loses nothing.

mod cache;
pub mod error;
pub mod format;
pub mod metrics;
pub mod recovery;
mod snapshot;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

pub use error::PersistenceError;
pub use metrics::{PersistenceMetrics, PersistenceMetricsSnapshot};
pub use recovery::{
    quarantine, Recovered, RecoveryPhase, RecoveryProgress, RecoveryProgressSnapshot,
    RecoveryReport, Truncation,
};

use crate::config::Fsync;
use crate::replication::wire::WireError;
use crate::store::{Record, RecordView};
pub use writer::WriterFault;
use writer::{Item, Shared, Stop, Writer};

/// Initial capacity of a new queued batch; most batches reuse the buffer of a synced one.
const NEW_BATCH_CAPACITY: usize = 16 << 10;

/// Tuning of the persistence layer; [`PersistenceConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct PersistenceConfig {
    /// The data directory (`--data-dir`); created if missing.
    pub data_dir: PathBuf,
    /// When the log is fdatasynced (`--fsync`).
    pub fsync: Fsync,
    /// Encoded bytes the writer queue holds before appends block (back-pressure).
    pub queue_limit_bytes: usize,
    /// Largest encoded record frame accepted by [`Persistence::append`].
    pub max_record_bytes: usize,
    /// Under `everysec`, written bytes not yet fdatasynced that make the writer thread sync
    /// before the second is up. The log keeps a copy of the unsynced bytes in memory (to
    /// rewrite them after an error), so this bounds that copy.
    pub sync_bytes: u64,
    /// A snapshot is due when the log since the last one exceeds
    /// `max(compaction_min_bytes, compaction_ratio × last snapshot size)`.
    pub compaction_min_bytes: u64,
    /// See [`PersistenceConfig::compaction_min_bytes`].
    pub compaction_ratio: f64,
    /// Approximate record bytes per snapshot frame.
    pub snapshot_frame_bytes: usize,
}

impl PersistenceConfig {
    /// Defaults: 64 MiB queue, 16 MiB records (the replication frame limit), compaction at
    /// `max(64 MiB, 0.5 × last snapshot)`, so outside a snapshot being written the directory
    /// stays within about 1.5 × the live data (plus 64 MiB) at the cost of writing a snapshot
    /// per half the live size logged.
    pub fn new(data_dir: impl Into<PathBuf>, fsync: Fsync) -> PersistenceConfig {
        PersistenceConfig {
            data_dir: data_dir.into(),
            fsync,
            queue_limit_bytes: 64 << 20,
            max_record_bytes: crate::replication::wire::DEFAULT_MAX_FRAME,
            sync_bytes: 4 << 20,
            compaction_min_bytes: 64 << 20,
            compaction_ratio: 0.5,
            snapshot_frame_bytes: 1 << 20,
        }
    }
}

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

/// The open persistence layer: the log writer thread and the snapshot machinery. Dropping it
/// stops the writer cleanly (everything queued is written and synced); prefer
/// [`Persistence::shutdown`] to see errors.
pub struct Persistence {
    shared: Arc<Shared>,
    config: PersistenceConfig,
    node_id: u32,
    thread: Mutex<Option<JoinHandle<()>>>,
    snapshot_running: Mutex<()>,
    // Held for the lifetime of the handle: two processes on one directory would interleave
    // segments.
    _lock: File,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Persistence")
            .field("data_dir", &self.config.data_dir)
            .field("fsync", &self.config.fsync)
            .field("node_id", &self.node_id)
            .finish()
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn lock_dir(dir: &Path) -> Result<File, PersistenceError> {
    let path = dir.join(format::LOCK_FILE);
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

impl Persistence {
    /// Opens the data directory at start: creates it if missing, locks it, reads or creates
    /// the node id, recovers (see [`recovery`]), starts a new log segment and the writer
    /// thread. `now_ms` drops expired records; tombstones deleted before `forget_before_ms`
    /// (now minus the tombstone grace) are dropped too.
    ///
    /// A [`PersistenceError::is_damage`] error means the directory cannot be trusted: refuse
    /// to serve, or call [`quarantine`] and open again empty when peers can re-sync the node.
    pub fn open(
        config: PersistenceConfig,
        now_ms: u64,
        forget_before_ms: u64,
    ) -> Result<(Persistence, Recovered), PersistenceError> {
        Persistence::open_with_progress(
            config,
            now_ms,
            forget_before_ms,
            &RecoveryProgress::default(),
        )
    }

    /// [`Persistence::open`], advancing `progress` (phase `reading`, bytes read of the total)
    /// while it reads the snapshot and the log, so a server can report it while it loads.
    pub fn open_with_progress(
        config: PersistenceConfig,
        now_ms: u64,
        forget_before_ms: u64,
        progress: &RecoveryProgress,
    ) -> Result<(Persistence, Recovered), PersistenceError> {
        let dir = config.data_dir.clone();
        fs::create_dir_all(&dir).map_err(|source| PersistenceError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let lock = lock_dir(&dir)?;
        let node_id = recovery::load_node_id(&dir)?;
        let (recovered, layout) =
            recovery::recover(&dir, node_id, progress, now_ms, forget_before_ms)?;
        let metrics = Arc::new(PersistenceMetrics::default());
        metrics
            .disc_bytes
            .store(recovery::disc_bytes(&dir)?, Ordering::Relaxed);
        metrics
            .log_bytes_since_snapshot
            .store(layout.log_bytes, Ordering::Relaxed);
        metrics
            .snapshot_bytes
            .store(layout.snapshot_bytes, Ordering::Relaxed);
        if recovered.report.truncated.is_some() {
            metrics.truncations.fetch_add(1, Ordering::Relaxed);
        }
        let shared = Arc::new(
            Shared::open(
                metrics,
                config.queue_limit_bytes.max(1),
                config.sync_bytes.max(1),
                dir.clone(),
                node_id,
                config.fsync,
                layout.next_segment,
            )
            .map_err(|source| PersistenceError::WriteFile {
                path: dir.join(format::segment_name(layout.next_segment)),
                source,
            })?,
        );
        let writer = Writer::new(shared.clone());
        let thread = std::thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || writer.run())
            .map_err(PersistenceError::Spawn)?;
        tracing::info!(
            dir = %dir.display(),
            node_id,
            fsync = ?config.fsync,
            segment = layout.next_segment,
            "persistence open"
        );
        Ok((
            Persistence {
                shared,
                config,
                node_id,
                thread: Mutex::new(Some(thread)),
                snapshot_running: Mutex::new(()),
                _lock: lock,
            },
            recovered,
        ))
    }

    /// The node id stored in the directory (the stamp origin across restarts).
    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Queues `record` for the log and returns its sequence number for
    /// [`Persistence::wait_durable`]. Call it after the record is applied to the store, under
    /// the key's lock: it never blocks. Back-pressure comes before the lock, from
    /// [`Persistence::admit_write`] (local writes) and [`Persistence::wait_for_room`] (records
    /// from peers), so the queue may exceed its limit by what the writers admitted meanwhile
    /// carry. While the log is failing the record is still queued (the writer rewrites the
    /// queue when the disc recovers) unless the queue is full: then it is dropped with
    /// [`PersistenceError::Unavailable`] (it stays in memory, unlogged).
    pub fn append(&self, record: &Record) -> Result<u64, PersistenceError> {
        self.append_view(&record.view())
    }

    /// [`Persistence::append`] of a borrowed record (a stored entry's), encoded straight into
    /// the queue.
    pub fn append_view(&self, record: &RecordView<'_>) -> Result<u64, PersistenceError> {
        let too_large = |error: WireError| PersistenceError::TooLarge {
            key: String::from_utf8_lossy(record.key).into_owned(),
            reason: error.to_string(),
        };
        let max = self.config.max_record_bytes;
        let mut queue = self.shared.queue.lock();
        if queue.stop != Stop::No {
            return Err(PersistenceError::Stopped);
        }
        if let Some(reason) = &queue.failed {
            if queue.queued_bytes + record.size() > self.shared.queue_limit {
                return Err(PersistenceError::Unavailable {
                    reason: reason.clone(),
                });
            }
        }
        let seq = queue.next_seq;
        // The frame is encoded straight into the queued batch: into the last one, else into a
        // recycled buffer of synced records or a new one.
        let len = match queue.items.back_mut() {
            Some(Item::Frames {
                bytes,
                last_seq,
                records,
            }) => {
                let len = format::encode_record_into(record, max, bytes).map_err(too_large)?;
                *last_seq = seq;
                *records += 1;
                len
            }
            _ => {
                let mut bytes = queue
                    .buffer()
                    .unwrap_or_else(|| Vec::with_capacity(NEW_BATCH_CAPACITY));
                let len = format::encode_record_into(record, max, &mut bytes).map_err(too_large)?;
                queue.items.push_back(Item::Frames {
                    bytes,
                    last_seq: seq,
                    records: 1,
                });
                len
            }
        };
        queue.next_seq += 1;
        queue.queued_bytes += len;
        self.shared
            .metrics
            .queued_bytes
            .store(queue.queued_bytes as u64, Ordering::Relaxed);
        // Under `everysec` the waiting appender writes the record itself (see [`writer::lead`]);
        // the writer thread only needs waking when it sleeps without a deadline. A wake-up per
        // record was a large part of the cost of disc mode.
        let wake = self.config.fsync == Fsync::Always || queue.parked;
        queue.parked = false;
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(seq)
    }

    /// Admission of a local write, before it takes any lock or changes anything: refuses it
    /// with [`PersistenceError::Unavailable`] (its text starts with `MISCONF`) while the log is
    /// failing, so a refused write has no effect, and waits while the queue is full (a slow
    /// disc slows writers down without stalling readers of the keys they write).
    pub fn admit_write(&self) -> Result<(), PersistenceError> {
        let metrics = &self.shared.metrics;
        // Fast path without the queue lock: the writer keeps both gauges current.
        if metrics.failing.load(Ordering::Relaxed) == 0
            && (metrics.queued_bytes.load(Ordering::Relaxed) as usize) < self.shared.queue_limit
        {
            return Ok(());
        }
        let mut queue = self.shared.queue.lock();
        loop {
            if let Some(reason) = &queue.failed {
                return Err(PersistenceError::Unavailable {
                    reason: reason.clone(),
                });
            }
            if queue.stop != Stop::No {
                return Err(PersistenceError::Stopped);
            }
            if queue.queued_bytes < self.shared.queue_limit {
                return Ok(());
            }
            self.shared.space.wait(&mut queue);
        }
    }

    /// Waits while the queue is full, before applying a record from a peer (which cannot be
    /// refused); returns at once while the log is failing or stopped.
    pub fn wait_for_room(&self) {
        let _ = self.admit_write();
    }

    /// Waits until record `seq` may be acknowledged: fdatasynced under `always`, written to
    /// the file under `everysec`. Fails with [`PersistenceError::Unavailable`] while the log is
    /// failing and with [`PersistenceError::Stopped`] after shutdown.
    ///
    /// Under `everysec` the caller first tries to write the queued records itself, on its own
    /// thread ([`writer::lead`]): one `write` of a few KiB at most. While another thread holds
    /// the log it awaits that holder's progress (the runtime thread serves other clients
    /// meanwhile) and tries again; after `LEAD_BUSY_WAIT` it leaves the record to the writer
    /// thread.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), PersistenceError> {
        if self.durable_seq() >= seq {
            return Ok(());
        }
        if self.config.fsync == Fsync::Everysec {
            // Group commit across connections, like Redis's one AOF `write` per event-loop
            // iteration: the other connections ready on this thread apply their writes first,
            // and whoever leads then writes them all at once (the others find theirs written).
            tokio::task::yield_now().await;
            if self.durable_seq() >= seq {
                return Ok(());
            }
        }
        let mut progress = self.shared.progress.subscribe();
        let give_up = tokio::time::Instant::now() + writer::LEAD_BUSY_WAIT;
        loop {
            match writer::lead(&self.shared, seq) {
                Some(true) => return Ok(()),
                Some(false) => break,
                None if tokio::time::Instant::now() >= give_up => {
                    self.shared.kick();
                    break;
                }
                None => {
                    // Another thread holds the log (a leader writing, often with this record):
                    // wait for its progress on this task, the runtime thread free meanwhile,
                    // instead of spinning and parking the thread on the lock.
                    let _ = tokio::time::timeout(writer::LEAD_RETRY, progress.changed()).await;
                    let current = progress.borrow_and_update();
                    if current.acked >= seq {
                        return Ok(());
                    }
                    if current.failed.is_some() || current.stopped {
                        break;
                    }
                }
            }
        }
        let state = progress
            .wait_for(|state| state.acked >= seq || state.failed.is_some() || state.stopped)
            .await
            .map_err(|_| PersistenceError::Stopped)?;
        if state.acked >= seq {
            return Ok(());
        }
        match &state.failed {
            Some(reason) => Err(PersistenceError::Unavailable {
                reason: reason.to_string(),
            }),
            None => Err(PersistenceError::Stopped),
        }
    }

    /// The greatest sequence that may be acknowledged (see [`Persistence::wait_durable`]).
    pub fn durable_seq(&self) -> u64 {
        self.shared.progress.borrow().acked
    }

    /// The greatest sequence fdatasynced.
    pub fn synced_seq(&self) -> u64 {
        self.shared.progress.borrow().synced
    }

    /// `Err(Unavailable)` while the log is failing (without waiting for queue space).
    pub fn check_writable(&self) -> Result<(), PersistenceError> {
        match &self.shared.queue.lock().failed {
            Some(reason) => Err(PersistenceError::Unavailable {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Test hook: `Fail` makes every write of the log fail with ENOSPC (a full disc), `Stall`
    /// holds the writer before it writes (a slow disc), `None` heals.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: WriterFault) {
        self.shared.fault.store(fault as u8, Ordering::Relaxed);
    }

    /// Whether the log since the last snapshot exceeds the compaction threshold and no
    /// snapshot is running: the caller then runs [`Persistence::snapshot`] (on a blocking
    /// thread).
    pub fn needs_snapshot(&self) -> bool {
        let metrics = &self.shared.metrics;
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
    /// (`None` = done), like [`crate::replication::Replica::snapshot_chunk`]; every key
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
        let (reply, answer) = sync_channel(1);
        {
            let mut queue = self.shared.queue.lock();
            if queue.stop != Stop::No {
                return Err(PersistenceError::Stopped);
            }
            queue.items.push_back(Item::Rotate { reply });
            queue.kicked = true;
        }
        self.shared.wake.notify_one();
        let segment = match answer.recv() {
            Ok(Ok(segment)) => segment,
            Ok(Err(reason)) => return Err(PersistenceError::Unavailable { reason }),
            Err(_) => return Err(PersistenceError::Stopped),
        };
        let (path, bytes, records) = snapshot::write_snapshot(
            dir,
            self.node_id,
            segment,
            now_unix_ms(),
            self.config.snapshot_frame_bytes,
            &mut chunk,
        )?;

        // Everything before `segment` is now in the snapshot.
        let mut removed_files = 0;
        let mut removed_bytes = 0;
        let read_dir = |source| PersistenceError::ReadDir {
            path: dir.clone(),
            source,
        };
        for entry in fs::read_dir(dir).map_err(read_dir)? {
            let entry = entry.map_err(read_dir)?;
            let name = entry.file_name();
            let doomed = match name.to_str().map(format::classify) {
                Some(format::FileKind::Segment(seq)) => seq < segment,
                Some(format::FileKind::Snapshot(seq)) => seq < segment,
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
        recovery::sync_dir(dir)?;

        let metrics = &self.shared.metrics;
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
            .store(now_unix_ms(), Ordering::Relaxed);
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

    /// The counters and gauges.
    pub fn metrics(&self) -> &Arc<PersistenceMetrics> {
        &self.shared.metrics
    }

    fn stop(&self, how: Stop) {
        {
            let mut queue = self.shared.queue.lock();
            if queue.stop == Stop::No || how == Stop::Abort {
                queue.stop = how;
            }
        }
        self.shared.wake.notify_all();
        self.shared.space.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
        self.shared
            .progress
            .send_modify(|progress| progress.stopped = true);
    }

    /// Stops cleanly: everything appended is written and fdatasynced, then the writer exits.
    /// Fails with [`PersistenceError::Unavailable`] if the log was failing and queued records
    /// could not be written.
    pub fn shutdown(self) -> Result<(), PersistenceError> {
        self.close()
    }

    /// [`Persistence::shutdown`] through a shared handle (the server holds it in an `Arc`):
    /// writes and fdatasyncs everything appended, then stops the writer; later appends fail
    /// with [`PersistenceError::Stopped`].
    pub fn close(&self) -> Result<(), PersistenceError> {
        let appended = self.shared.queue.lock().next_seq - 1;
        self.stop(Stop::Clean);
        let progress = self.shared.progress.borrow().clone();
        if progress.synced >= appended {
            return Ok(());
        }
        Err(PersistenceError::Unavailable {
            reason: progress
                .failed
                .map(|reason| reason.to_string())
                .unwrap_or_else(|| format!("records up to {appended} were not synced")),
        })
    }

    /// Test hook: stops the writer at once, dropping whatever is queued and not written, as if
    /// the process had been killed (what was written stays in the page cache, as it would).
    #[doc(hidden)]
    pub fn crash(self) {
        self.stop(Stop::Abort);
    }
}

impl Drop for Persistence {
    fn drop(&mut self) {
        self.stop(Stop::Clean);
    }
}
