//! INFO: Redis's sections with the field names clients read (`redis_version`, `loading`,
//! `role`, `used_memory`, `db0:keys=...`), plus the write-ahead log's disc usage, fdatasync
//! latency and last snapshot in `# Persistence` (disc mode, docs/persistence.md; Redis's
//! `loading_*` progress fields while the node recovers) and the leaderless replication's
//! `sessionstore_*` fields in `# Replication`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::connection::REDIS_VERSION;
use super::flags::LOADING_OK;
use super::CommandSpec;
use super::{text, Call};
use crate::config::StorageMode;
use crate::node::{Lifecycle, NodeState};
use crate::protocol::Frame;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[spec!("info", -1, LOADING_OK, info)];

/// Formats bytes like Redis's `bytesToHuman` (`1.50M`).
pub fn human_bytes(bytes: u64) -> String {
    let value = bytes as f64;
    if bytes < 1024 {
        format!("{bytes}B")
    } else if value < 1024.0 * 1024.0 {
        format!("{:.2}K", value / 1024.0)
    } else if value < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", value / (1024.0 * 1024.0))
    } else {
        format!("{:.2}G", value / (1024.0 * 1024.0 * 1024.0))
    }
}

/// The text of INFO for the given section (`None` = default sections).
pub fn info_text(call: &Call<'_>, section: Option<&str>) -> String {
    let state = call.state;
    let wanted = |name: &str| match section {
        None => true,
        Some(section) => {
            section == "all" || section == "default" || section == "everything" || section == name
        }
    };
    let mut out = String::new();
    let stats = state.engine.stats();
    let memory = state.engine.memory();
    if wanted("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nstore_node_version:{}\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            state.config.resp_port,
            state.uptime_seconds(),
            state.uptime_seconds() / 86400
        );
    }
    if wanted("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\npubsub_clients:{}\r\n\r\n",
            state.clients.load(Ordering::Relaxed),
            state.config.max_clients,
            state.pubsub.subscribers()
        );
    }
    if wanted("memory") {
        out.push_str(&memory_section(state, &memory));
    }
    if wanted("persistence") {
        out.push_str(&persistence_section(state));
    }
    if wanted("stats") {
        let pubsub = state.pubsub.counts();
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\nclient_output_buffer_limit_disconnections:{}\r\n\r\n",
            state.metrics.connections_total.load(Ordering::Relaxed),
            state.metrics.total_commands(),
            state.metrics.rejected_connections.load(Ordering::Relaxed),
            stats.expired,
            stats.evicted,
            stats.hits,
            stats.misses,
            pubsub.0,
            pubsub.1,
            pubsub.2,
            state.pubsub.metrics.disconnected.load(Ordering::Relaxed),
        );
        out.truncate(out.len() - 2);
        let _ = write!(
            out,
            "evicted_clients:{}\r\nclient_query_buffer_limit_disconnections:{}\r\n\r\n",
            state.client_limits.evicted(),
            state.client_limits.query_buffer_disconnections()
        );
    }
    if wanted("replication") {
        out.push_str(&replication_section(state));
    }
    if wanted("keyspace") {
        out.push_str("# Keyspace\r\n");
        if stats.keys > 0 {
            let _ = write!(
                out,
                "db0:keys={},expires={},avg_ttl=0\r\n",
                stats.keys, stats.volatile_keys
            );
        }
    }
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// The `# Memory` section, ending with the blank line INFO puts between sections.
///
/// `used_memory` is what the limit is compared with: the sampled footprint plus the growth
/// accounted since (docs/memory.md), the same figure as `/v1/status` and `/metrics`.
/// `used_memory_dataset` is the data estimate, `mem_clients_normal` the connections' buffers,
/// `mem_fragmentation_ratio` Redis's `used_memory_rss / used_memory`.
fn memory_section(state: &NodeState, memory: &crate::store::MemoryStatus) -> String {
    let readings = state.memory.read();
    let rss = readings.process_rss_bytes;
    let ratio = if memory.used_bytes > 0 {
        rss as f64 / memory.used_bytes as f64
    } else {
        0.0
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "# Memory\r\nused_memory:{used}\r\nused_memory_human:{used_human}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{rss_human}\r\nused_memory_dataset:{data}\r\nmem_clients_normal:{buffers}\r\nused_memory_lua:{lua}\r\nused_memory_lua_human:{lua_human}\r\nused_memory_scripts:0\r\nnumber_of_cached_scripts:{scripts}\r\nmaxmemory:{limit}\r\nmaxmemory_human:{limit_human}\r\nmaxmemory_policy:{policy}\r\nmem_fragmentation_ratio:{ratio:.2}\r\nmem_fragmentation_bytes:{fragmentation}\r\n",
        used = memory.used_bytes,
        used_human = human_bytes(memory.used_bytes),
        rss_human = human_bytes(rss),
        data = memory.data_bytes,
        buffers = memory.buffer_bytes,
        lua = state.scripts.used_memory(),
        lua_human = human_bytes(state.scripts.used_memory() as u64),
        scripts = state.scripts.cached(),
        limit = memory.limit_bytes,
        limit_human = human_bytes(memory.limit_bytes),
        policy = memory.policy.as_str(),
        fragmentation = rss as i64 - memory.used_bytes as i64,
    );
    if let Some(cgroup) = readings.cgroup_bytes {
        let _ = write!(out, "memory_cgroup_unreclaimable:{cgroup}\r\n");
    }
    let _ = write!(
        out,
        "memory_reserve:{reserve}\r\nmemory_high_watermark:{high}\r\nmemory_low_watermark:{low}\r\nmemory_alarm:{alarm}\r\nmemory_peer_alarm:{peer}\r\nmemory_tombstones:{tombstones}\r\nmemory_tombstone_bytes:{tombstone_bytes}\r\nmaxmemory_clients:{clients_cap}\r\n\r\n",
        reserve = memory.reserve_bytes,
        clients_cap = state.client_limits.client_memory_cap(memory.limit_bytes),
        high = memory.high_watermark_bytes,
        low = memory.low_watermark_bytes,
        alarm = u8::from(memory.alarm),
        peer = u8::from(memory.peer_alarm),
        tombstones = state.engine.stats().tombstones,
        tombstone_bytes = memory.tombstone_bytes,
    );
    out
}

/// The `# Replication` section, ending with the blank line INFO puts between sections.
///
/// Every node accepts writes, so it is `role:master` for clients (ioredis, StackExchange.Redis
/// and redis-py read `role` and would refuse writes to a `slave`). Redis's `connected_slaves`
/// and `master_*` fields are left out: they describe primary/replica replication, which
/// sessionstore does not have, and clients tolerate their absence. The `sessionstore_*` fields
/// describe the leaderless replication (docs/replication.md): without peers configured the node
/// is a single-node cluster with zero peers.
fn replication_section(state: &NodeState) -> String {
    let (discovered, connected, lag_max, metrics) = match state.replication() {
        Some(replication) => {
            let peers = replication.peers();
            (
                peers.len(),
                peers.iter().filter(|peer| peer.connected).count(),
                peers.iter().map(|peer| peer.lag_ops).max().unwrap_or(0),
                replication.metrics().snapshot(),
            )
        }
        None => (0, 0, 0, crate::replication::MetricsSnapshot::default()),
    };
    format!(
        "# Replication\r\nrole:master\r\nsessionstore_peers_discovered:{discovered}\r\nsessionstore_peers_connected:{connected}\r\nsessionstore_replication_state:{replication_state}\r\nsessionstore_lag_ops_max:{lag_max}\r\nsessionstore_records_sent:{records_sent}\r\nsessionstore_records_received:{records_received}\r\nsessionstore_bytes_sent:{bytes_sent}\r\nsessionstore_bytes_received:{bytes_received}\r\nsessionstore_repairs:{repairs}\r\n\r\n",
        replication_state = state.lifecycle().as_str(),
        records_sent = metrics.records_sent,
        records_received = metrics.records_received,
        bytes_sent = metrics.bytes_sent,
        bytes_received = metrics.bytes_received,
        repairs = metrics.repairs_applied,
    )
}

/// INFO [section]
pub fn info(call: &mut Call<'_>) -> Frame {
    let section = call.args.get(1).map(|arg| text(arg).to_ascii_lowercase());
    Frame::Verbatim(Bytes::from(info_text(call, section.as_deref())))
}

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
fn persistence_section(state: &NodeState) -> String {
    if state.recovering() && state.config.storage_mode == StorageMode::Disc {
        return recovering_section(state);
    }
    let loading = u8::from(state.lifecycle() == Lifecycle::Loading);
    let Some(persistence) = state.persistence() else {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn info_replication_of_a_single_node() {
        let mut h = Harness::new();
        h.run("SET a 1");
        assert_eq!(
            h.run("INFO replication"),
            Frame::Verbatim(bytes::Bytes::from_static(
                b"# Replication\r\nrole:master\r\nsessionstore_peers_discovered:0\r\nsessionstore_peers_connected:0\r\nsessionstore_replication_state:ready\r\nsessionstore_lag_ops_max:0\r\nsessionstore_records_sent:0\r\nsessionstore_records_received:0\r\nsessionstore_bytes_sent:0\r\nsessionstore_bytes_received:0\r\nsessionstore_repairs:0\r\n"
            ))
        );
        let Frame::Verbatim(all) = h.run("INFO") else {
            panic!("not verbatim")
        };
        let all = String::from_utf8_lossy(&all).into_owned();
        let persistence = all
            .split("\r\n\r\n")
            .find(|section| section.starts_with("# Persistence"))
            .expect("a persistence section");
        assert!(persistence.contains("\r\nloading:0\r\n"), "{persistence}");
        assert!(all.contains("\r\n\r\n# Replication\r\nrole:master\r\n"));
        assert!(!all.contains("connected_slaves"));
    }
}
