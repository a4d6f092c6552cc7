//! The open persistence layer ([`Persistence`]) and its tuning ([`PersistenceConfig`]):
//! opening the data directory (lock, node id, recovery, a new log segment, the writer thread),
//! the calls of the write path (admit, append, wait until durable), and stopping. Snapshots
//! are in [`super::snapshot`].

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::directory;
use super::error::PersistenceError;
use super::format::{self, DEFAULT_MAX_RECORD_BYTES};
use super::metrics::PersistenceMetrics;
use super::recovery::{self, Recovered, RecoveryProgress};
use super::wal::{Shared, Stop, Writer, WriterFault};
use crate::config::Fsync;
use crate::store::{Record, RecordView};

/// Tuning of the persistence layer; [`PersistenceConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct PersistenceConfig {
    /// The data directory (`--data-dir`); created if missing.
    pub data_dir: PathBuf,
    /// When the log is fdatasynced (`--fsync`).
    pub fsync: Fsync,
    /// The node id a data directory without one records (a fresh node). A directory that has
    /// one keeps it ([`Persistence::node_id`]): it is the origin of the stamps of the records
    /// the directory holds.
    pub fresh_node_id: u32,
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
    /// per half the live size logged. Only a fresh directory records `fresh_node_id`
    /// ([`PersistenceConfig::fresh_node_id`]).
    pub fn new(
        data_dir: impl Into<PathBuf>,
        fsync: Fsync,
        fresh_node_id: u32,
    ) -> PersistenceConfig {
        PersistenceConfig {
            data_dir: data_dir.into(),
            fsync,
            fresh_node_id,
            queue_limit_bytes: 64 << 20,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            sync_bytes: 4 << 20,
            compaction_min_bytes: 64 << 20,
            compaction_ratio: 0.5,
            snapshot_frame_bytes: 1 << 20,
        }
    }
}

/// The open persistence layer: the log writer thread and the snapshot machinery. Dropping it
/// stops the writer cleanly (everything queued is written and synced); prefer
/// [`Persistence::shutdown`] to see errors.
pub struct Persistence {
    pub(super) shared: Arc<Shared>,
    pub(super) config: PersistenceConfig,
    pub(super) node_id: u32,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Held while a snapshot is written: one at a time.
    pub(super) snapshot_running: Mutex<()>,
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

impl Persistence {
    /// Opens the data directory at start: creates it if missing, locks it, reads the node id
    /// (or records [`PersistenceConfig::fresh_node_id`]), recovers (see [`recovery`]), starts
    /// a new log segment and the writer thread. `now_ms` drops expired records; tombstones
    /// deleted before `forget_before_ms` (now minus the tombstone grace) are dropped too.
    ///
    /// A [`PersistenceError::is_damage`] error means the directory cannot be trusted: refuse
    /// to serve, or call [`super::quarantine`] and open again empty when peers can re-sync
    /// the node.
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
        let lock = directory::lock(&dir)?;
        let node_id = directory::load_node_id(&dir, config.fresh_node_id)?;
        let (recovered, layout) =
            recovery::recover(&dir, node_id, progress, now_ms, forget_before_ms)?;
        let metrics = Arc::new(PersistenceMetrics::default());
        metrics
            .disc_bytes
            .store(directory::disc_bytes(&dir)?, Ordering::Relaxed);
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
    /// [`Persistence::wait_for_room`] (awaited by local writers and by the links applying
    /// records from peers), so the queue may exceed its limit by what the writers let in
    /// meanwhile carry. While the log is failing the record is still queued (the writer rewrites the
    /// queue when the disc recovers) unless the queue is full: then it is dropped with
    /// [`PersistenceError::Unavailable`] (it stays in memory, unlogged).
    pub fn append(&self, record: &Record) -> Result<u64, PersistenceError> {
        self.append_view(&record.view())
    }

    /// [`Persistence::append`] of a borrowed record (a stored entry's), encoded straight into
    /// the queue.
    pub fn append_view(&self, record: &RecordView<'_>) -> Result<u64, PersistenceError> {
        self.shared
            .channel()
            .enqueue(record, self.config.max_record_bytes)
    }

    /// Admission of a local write, before it takes any lock or changes anything: refuses it
    /// with [`PersistenceError::Unavailable`] (its text starts with `MISCONF`) while the log is
    /// failing, so a refused write has no effect. Never waits: await
    /// [`Persistence::wait_for_room`] first.
    pub fn admit_write(&self) -> Result<(), PersistenceError> {
        self.shared.channel().admit()
    }

    /// Whether a write may go ahead without waiting for room (see
    /// [`Persistence::wait_for_room`]); cheap enough to ask before every write.
    pub fn has_room(&self) -> bool {
        self.shared.channel().has_room()
    }

    /// Waits while the queue is full, without blocking the thread: a slow disc slows the
    /// writers down (RESP connections that write, session writes, the links applying records
    /// from peers) and nothing else their threads serve. Returns at once while the log is
    /// failing (the write is refused) or stopped.
    pub async fn wait_for_room(&self) {
        self.shared.channel().wait_for_room().await;
    }

    /// Waits until record `seq` may be acknowledged: fdatasynced under `always`, written to
    /// the file under `everysec`. Fails with [`PersistenceError::Unavailable`] while the log is
    /// failing and with [`PersistenceError::Stopped`] after shutdown.
    ///
    /// Under `everysec` the caller first tries to write the queued records itself, on its own
    /// thread: one `write` of a few KiB at most. While another thread holds the log it awaits
    /// that holder's progress (the runtime thread serves other clients meanwhile) and tries
    /// again; after 5 ms of that it leaves the record to the writer thread.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), PersistenceError> {
        self.shared.wait_durable(seq).await
    }

    /// The greatest sequence that may be acknowledged (see [`Persistence::wait_durable`]).
    pub fn durable_seq(&self) -> u64 {
        self.shared.channel().acked_seq()
    }

    /// The greatest sequence fdatasynced.
    pub fn synced_seq(&self) -> u64 {
        self.shared.channel().synced_seq()
    }

    /// `Err(Unavailable)` while the log is failing (without waiting for queue space).
    pub fn check_writable(&self) -> Result<(), PersistenceError> {
        match self.shared.channel().failure() {
            Some(reason) => Err(PersistenceError::Unavailable { reason }),
            None => Ok(()),
        }
    }

    /// Test hook: `Fail` makes every write of the log fail with ENOSPC (a full disc), `Stall`
    /// holds the writer before it writes (a slow disc), `None` heals.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: WriterFault) {
        self.shared.channel().inject_fault(fault);
    }

    /// The counters and gauges.
    pub fn metrics(&self) -> &Arc<PersistenceMetrics> {
        self.shared.channel().metrics()
    }

    fn stop(&self, how: Stop) {
        let channel = self.shared.channel();
        channel.request_stop(how);
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
        channel.mark_stopped();
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
        let appended = self.shared.channel().last_appended();
        self.stop(Stop::Clean);
        let progress = self.shared.channel().progress();
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
