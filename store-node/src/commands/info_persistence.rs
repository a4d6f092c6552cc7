//! The `# Persistence` section of INFO: Redis's field names where they mean the same thing
//! (`loading`, `aof_enabled`, `aof_last_write_status`, ...) plus the write-ahead log's disc
//! usage, fdatasync latency and last snapshot (disc mode, docs/persistence.md). While the node
//! recovers from disc, Redis's `loading_*` progress fields.

use crate::config::StorageMode;
use crate::state::{Lifecycle, NodeState};

/// The section while disc recovery runs: `loading:1` and Redis's progress fields over the
/// bytes of snapshot and log read.
fn recovering_section(state: &NodeState) -> String {
    let progress = state.recovery.snapshot();
    let percent = if progress.bytes_total == 0 {
        0.0
    } else {
        progress.bytes_read as f64 * 100.0 / progress.bytes_total as f64
    };
    format!(
        "# Persistence\r\nloading:1\r\nstorage_mode:disc\r\ndata_dir:{dir}\r\naof_enabled:1\r\nloading_phase:{phase}\r\nloading_total_bytes:{total}\r\nloading_loaded_bytes:{read}\r\nloading_loaded_perc:{percent:.2}\r\nloading_total_records:{records_total}\r\nloading_loaded_records:{records_loaded}\r\n\r\n",
        dir = state.config.data_dir.display(),
        phase = progress.phase.as_str(),
        total = progress.bytes_total,
        read = progress.bytes_read,
        records_total = progress.records_total,
        records_loaded = progress.records_loaded,
    )
}

/// The section text, ending with the blank line INFO puts between sections.
pub fn persistence_section(state: &NodeState) -> String {
    if state.recovering() && state.config.storage_mode == StorageMode::Disc {
        return recovering_section(state);
    }
    let loading = u8::from(state.lifecycle() == Lifecycle::Loading);
    let Some(persistence) = state.engine.persistence() else {
        return format!(
            "# Persistence\r\nloading:{loading}\r\nrdb_changes_since_last_save:0\r\naof_enabled:0\r\nstorage_mode:ram\r\n\r\n"
        );
    };
    let metrics = persistence.metrics().snapshot();
    let fsync = match state.config.fsync {
        crate::config::Fsync::Always => "always",
        crate::config::Fsync::Everysec => "everysec",
    };
    let status = if metrics.failing { "err" } else { "ok" };
    let p99 = metrics.fsync_quantile_micros(0.99).unwrap_or(0);
    let p50 = metrics.fsync_quantile_micros(0.5).unwrap_or(0);
    let last_save = metrics.last_snapshot_unix_ms / 1000;
    format!(
        "# Persistence\r\nloading:{loading}\r\nstorage_mode:disc\r\ndata_dir:{dir}\r\naof_enabled:1\r\naof_fsync:{fsync}\r\naof_last_write_status:{status}\r\naof_current_size:{log}\r\nrdb_last_save_time:{last_save}\r\nrdb_last_bgsave_time_sec:{snapshot_secs}\r\nrdb_saves:{snapshots}\r\nsnapshot_bytes:{snapshot_bytes}\r\ndisc_bytes:{disc}\r\nwal_records_written:{records}\r\nwal_io_errors:{errors}\r\nwal_truncations:{truncations}\r\nfsyncs:{fsyncs}\r\nfsync_p50_micros:{p50}\r\nfsync_p99_micros:{p99}\r\n\r\n",
        dir = persistence.data_dir().display(),
        log = metrics.log_bytes_since_snapshot,
        snapshot_secs = metrics.last_snapshot_duration_ms / 1000,
        snapshots = metrics.snapshots,
        snapshot_bytes = metrics.snapshot_bytes,
        disc = metrics.disc_bytes,
        records = metrics.records_written,
        errors = metrics.io_errors,
        truncations = metrics.truncations,
        fsyncs = metrics.fsyncs,
    )
}
