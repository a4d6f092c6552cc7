//! The node's side of disc mode (`--storage-mode disc`, docs/persistence.md): opening the
//! data directory at start and loading what it recovered into the engine, the damage policy
//! (refuse to serve, or quarantine and re-sync from reachable peers), the periodic snapshot
//! task, and the final flush at shutdown.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::hook::NodeHook;
use super::state::NodeState;
use crate::config::Config;
use crate::persistence::{
    quarantine, Persistence, PersistenceConfig, PersistenceError, Recovered, RecoveryPhase,
    RecoveryProgress,
};
use crate::replication::generate_node_id;
use crate::store::MemoryEngine;

/// Tombstones younger than this are loaded (the replication engine's default grace), so a
/// delete still wins over older versions a peer may send.
const TOMBSTONE_GRACE_MS: u64 = 3_600_000;

/// How often the snapshot task checks the compaction threshold.
const SNAPSHOT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Disc mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscError {
    /// The data directory is damaged and no peer can re-sync the node.
    #[error("refusing to serve from data directory {data_dir}: {source}; repair or move the damaged file aside, or start the node with reachable peers to re-sync it")]
    Damaged {
        /// `--data-dir`.
        data_dir: String,
        /// What is damaged (file and byte offset).
        source: PersistenceError,
    },
    /// The data directory could not be opened (locked, unreadable, not writable).
    #[error("failed to open data directory {data_dir}: {source}")]
    Open {
        /// `--data-dir`.
        data_dir: String,
        /// The cause.
        source: PersistenceError,
    },
    /// The damaged files could not be moved aside.
    #[error("failed to quarantine the damaged files of {data_dir}: {source}")]
    Quarantine {
        /// `--data-dir`.
        data_dir: String,
        /// The cause.
        source: PersistenceError,
    },
    /// The blocking recovery task failed.
    #[error("recovery task failed: {0}")]
    Task(String),
}

/// What [`open`] recovered.
#[derive(Debug)]
pub struct Opened {
    /// The open log.
    pub persistence: Arc<Persistence>,
    /// The persistent node id (the stamp origin across restarts).
    pub node_id: u32,
    /// The greatest recovered stamp; the clock must issue stamps above it.
    pub max_hlc: u64,
}

fn now_ms() -> u64 {
    crate::store::unix_ms()
}

/// Whether some configured peer answers now: a `--peers` address, or an address the headless
/// Service name resolves to, accepts a TCP connection on its peer port within a second. This
/// node's own peer listener is not bound yet, so it never counts itself.
async fn peers_reachable(config: &Config) -> bool {
    let mut candidates: Vec<String> = config
        .peers
        .iter()
        .map(|peer| peer.trim().to_string())
        .filter(|peer| !peer.is_empty())
        .collect();
    if let Some(name) = config
        .cluster_service_name
        .as_deref()
        .filter(|name| !name.is_empty())
    {
        candidates.push(format!("{name}:{}", config.peer_port));
    }
    for candidate in candidates {
        let resolved = tokio::task::spawn_blocking(move || {
            candidate
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<_>>)
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        for address in resolved {
            let connect = tokio::net::TcpStream::connect(address);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return true;
            }
        }
    }
    false
}

/// Most threads loading recovered records into the engine.
const LOAD_THREADS: usize = 4;

async fn open_blocking(
    config: PersistenceConfig,
    progress: Arc<RecoveryProgress>,
) -> Result<Result<(Persistence, Recovered), PersistenceError>, DiscError> {
    tokio::task::spawn_blocking(move || {
        let now = now_ms();
        Persistence::open_with_progress(
            config,
            now,
            now.saturating_sub(TOMBSTONE_GRACE_MS),
            &progress,
        )
    })
    .await
    .map_err(|error| DiscError::Task(error.to_string()))
}

/// Opens `--data-dir`, recovers it and loads the records into `engine` through the merge path
/// (memory accounted, nothing fed back to replication), then installs the log in `hook`.
/// A damaged directory refuses to start with the file and byte offset, unless a peer is
/// reachable: then the damaged files go to `damaged-<unix-secs>/` and the node starts empty
/// and re-syncs from its peers. `progress` follows the reading and loading (the server
/// answers `LOADING` and reports it meanwhile).
pub async fn open(
    config: &Config,
    engine: &Arc<MemoryEngine>,
    hook: &NodeHook,
    progress: &Arc<RecoveryProgress>,
) -> Result<Opened, DiscError> {
    let data_dir = config.data_dir.display().to_string();
    // Recorded only by a fresh directory: one that has a node id keeps it.
    let mut persistence_config =
        PersistenceConfig::new(config.data_dir.clone(), config.fsync, generate_node_id());
    persistence_config.queue_limit_bytes = config.log_queue_limit_bytes;
    let opened = open_blocking(persistence_config.clone(), progress.clone()).await?;
    let (persistence, recovered) = match opened {
        Ok(opened) => opened,
        Err(source) if source.is_damage() => {
            if !(config.replicated() && peers_reachable(config).await) {
                tracing::error!(%source, data_dir, "data directory damaged and no peer reachable: refusing to serve");
                return Err(DiscError::Damaged { data_dir, source });
            }
            let unix_secs = now_ms() / 1000;
            let moved = quarantine(&config.data_dir, unix_secs).map_err(|source| {
                DiscError::Quarantine {
                    data_dir: data_dir.clone(),
                    source,
                }
            })?;
            tracing::warn!(%source, quarantine = %moved.display(), "data directory damaged: files moved aside, re-syncing from peers");
            open_blocking(persistence_config, progress.clone())
                .await?
                .map_err(|source| DiscError::Open {
                    data_dir: data_dir.clone(),
                    source,
                })?
        }
        Err(source) => return Err(DiscError::Open { data_dir, source }),
    };
    let report = recovered.report.clone();
    if let Some(truncated) = &report.truncated {
        tracing::warn!(
            file = %truncated.path.display(),
            offset = truncated.offset,
            dropped_bytes = truncated.dropped_bytes,
            reason = %truncated.reason,
            "torn write-ahead log tail truncated"
        );
    }
    let loader = engine.clone();
    let records = recovered.records;
    let loading = progress.clone();
    loading.set_records_total(records.len() as u64);
    loading.set_phase(RecoveryPhase::Loading);
    tokio::task::spawn_blocking(move || {
        let now = now_ms();
        let forget_before = now.saturating_sub(TOMBSTONE_GRACE_MS);
        // The engine's shards lock separately, so they load from several threads at once.
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, LOAD_THREADS);
        loader.load_records(&records, now, forget_before, threads, &|records| {
            loading.add_records_loaded(records)
        });
        // Freeing a million records takes a while and nothing waits for it.
        let _ = std::thread::Builder::new()
            .name("recovery-free".into())
            .spawn(move || drop(records));
    })
    .await
    .map_err(|error| DiscError::Task(error.to_string()))?;
    progress.set_phase(RecoveryPhase::Done);
    let persistence = Arc::new(persistence);
    let node_id = persistence.node_id();
    hook.set_persistence(persistence.clone(), node_id, report.max_hlc);
    tracing::info!(
        data_dir,
        fsync = ?config.fsync,
        node_id,
        snapshot = ?report.snapshot,
        segments = report.segments,
        records_read = report.records_read,
        records_loaded = report.records_loaded,
        expired_dropped = report.expired_dropped,
        tombstones_dropped = report.tombstones_dropped,
        bytes_read = report.bytes_read,
        duration_ms = report.duration.as_millis() as u64,
        keys = engine.len(),
        "recovered from disc"
    );
    Ok(Opened {
        persistence,
        node_id,
        max_hlc: report.max_hlc,
    })
}

/// Admission of a local write in disc mode, before anything is locked or changed (RESP
/// write commands, HTTP session writes): `MISCONF ...` while the write-ahead log is failing,
/// so a refused write has no effect. Never waits: writers await [`wait_for_log_room`] first.
/// Always `Ok` in RAM mode and while recovering (nothing is logged yet).
pub fn admit_write(state: &NodeState) -> Result<(), PersistenceError> {
    match state.persistence() {
        Some(persistence) => persistence.admit_write(),
        None => Ok(()),
    }
}

/// Whether the write-ahead log's queue is full (a slow disc): a writer then awaits
/// [`wait_for_log_room`] before it writes. False in RAM mode.
pub fn log_full(state: &NodeState) -> bool {
    state
        .persistence()
        .is_some_and(|persistence| !persistence.has_room())
}

/// Waits, without blocking the thread, until the write-ahead log's queue has room (at once in
/// RAM mode, while the log is failing, or when it has room).
pub async fn wait_for_log_room(state: &NodeState) {
    if let Some(persistence) = state.persistence() {
        persistence.wait_for_room().await;
    }
}

/// Writes a snapshot whenever the log since the last one passes the compaction threshold
/// (checked every second), on a blocking thread, until `shutdown`.
pub async fn snapshot_loop(state: Arc<NodeState>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SNAPSHOT_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(persistence) = state.persistence().cloned() else {
            return;
        };
        if !persistence.needs_snapshot() {
            continue;
        }
        let source = state.engine.clone();
        let result = tokio::task::spawn_blocking(move || {
            persistence.snapshot(|after, max, visit| source.visit_snapshot_chunk(after, max, visit))
        })
        .await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "snapshot failed; retrying later"),
            Err(error) => tracing::warn!(%error, "snapshot task failed; retrying later"),
        }
    }
}

/// Writes and fdatasyncs everything appended, then stops the log (shutdown, after clients and
/// replication stopped).
pub fn close(state: &NodeState) {
    if let Some(persistence) = state.persistence() {
        match persistence.close() {
            Ok(()) => tracing::info!("write-ahead log flushed and synced"),
            Err(error) => tracing::error!(%error, "write-ahead log not fully synced at shutdown"),
        }
    }
}
