//! Server commands: INFO, CONFIG GET/SET/RESETSTAT, COMMAND, FLUSHDB/FLUSHALL, TIME.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::connection::REDIS_VERSION;
use super::{is, text, Call, COMMANDS, SYNTAX};
use crate::protocol::Frame;

/// Resident set size of this process, from /proc (0 where unavailable).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

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
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
            state.clients.load(Ordering::Relaxed),
            state.config.max_clients
        );
    }
    if wanted("memory") {
        let rss = resident_bytes();
        let _ = write!(
            out,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{used_human}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{rss_human}\r\nmaxmemory:{limit}\r\nmaxmemory_human:{limit_human}\r\nmaxmemory_policy:{policy}\r\nmemory_high_watermark:{high}\r\nmemory_low_watermark:{low}\r\nmemory_alarm:{alarm}\r\n\r\n",
            used = memory.used_bytes,
            used_human = human_bytes(memory.used_bytes),
            rss = rss,
            rss_human = human_bytes(rss),
            limit = memory.limit_bytes,
            limit_human = human_bytes(memory.limit_bytes),
            policy = memory.policy.as_str(),
            high = memory.high_watermark_bytes,
            low = memory.low_watermark_bytes,
            alarm = u8::from(memory.alarm),
        );
    }
    if wanted("persistence") {
        out.push_str(&super::info_persistence::persistence_section(state));
    }
    if wanted("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\r\n",
            state.metrics.connections_total.load(Ordering::Relaxed),
            state.metrics.total_commands(),
            state.metrics.rejected_connections.load(Ordering::Relaxed),
            stats.expired,
            stats.evicted,
            stats.hits,
            stats.misses
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

/// The `# Replication` section, ending with the blank line INFO puts between sections.
///
/// Every node accepts writes, so it is `role:master` for clients (ioredis, StackExchange.Redis
/// and redis-py read `role` and would refuse writes to a `slave`). Redis's `connected_slaves`
/// and `master_*` fields are left out: they describe primary/replica replication, which
/// sessionstore does not have, and clients tolerate their absence. The `sessionstore_*` fields
/// describe the leaderless replication (docs/replication.md): without peers configured the node
/// is a single-node cluster with zero peers.
pub fn replication_section(state: &crate::state::NodeState) -> String {
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

fn config_values(call: &Call<'_>) -> Vec<(&'static str, String)> {
    let memory = call.state.engine.memory();
    vec![
        ("maxmemory", memory.limit_bytes.to_string()),
        ("maxmemory-policy", memory.policy.as_str().to_string()),
        ("maxclients", call.state.config.max_clients.to_string()),
        ("timeout", call.state.config.client_idle_timeout.to_string()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        (
            "notify-keyspace-events",
            call.state.notify_keyspace_events(),
        ),
        ("port", call.state.config.resp_port.to_string()),
    ]
}

/// CONFIG GET pattern [pattern ...] | SET notify-keyspace-events value | RESETSTAT
pub fn config(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let sub = &args[1];
    if is(sub, "get") && args.len() >= 3 {
        let values = config_values(call);
        let pairs = values
            .into_iter()
            .filter(|(name, _)| {
                args[2..].iter().any(|pattern| {
                    crate::store::glob::matches(&pattern.to_ascii_lowercase(), name.as_bytes())
                })
            })
            .map(|(name, value)| {
                (
                    Frame::bulk(name.as_bytes()),
                    Frame::Bulk(Bytes::from(value)),
                )
            })
            .collect();
        Frame::Map(pairs)
    } else if is(sub, "set") && args.len() == 4 {
        if is(&args[2], "notify-keyspace-events") {
            call.state.set_notify_keyspace_events(text(&args[3]));
            Frame::ok()
        } else {
            Frame::Error(
                format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    text(&args[2])
                )
                .into(),
            )
        }
    } else if is(sub, "resetstat") && args.len() == 2 {
        Frame::ok()
    } else {
        Frame::Error(
            format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
                text(sub)
            )
            .into(),
        )
    }
}

/// COMMAND | COMMAND COUNT | COMMAND DOCS | COMMAND INFO name...
pub fn command(call: &mut Call<'_>) -> Frame {
    let describe = |name: &str| {
        COMMANDS
            .iter()
            .find(|spec| spec.name == name)
            .map_or(Frame::Null, |spec| {
                Frame::Array(vec![
                    Frame::bulk(spec.name.as_bytes()),
                    Frame::Integer(i64::from(spec.arity)),
                    Frame::Set(Vec::new()),
                    Frame::Integer(if spec.arity == 1 || spec.arity == -1 {
                        0
                    } else {
                        1
                    }),
                    Frame::Integer(if spec.arity == 1 || spec.arity == -1 {
                        0
                    } else {
                        1
                    }),
                    Frame::Integer(if spec.arity == 1 || spec.arity == -1 {
                        0
                    } else {
                        1
                    }),
                ])
            })
    };
    match call.args.get(1) {
        None => Frame::Array(COMMANDS.iter().map(|spec| describe(spec.name)).collect()),
        Some(sub) if is(sub, "count") => Frame::Integer(COMMANDS.len() as i64),
        Some(sub) if is(sub, "docs") => Frame::Map(Vec::new()),
        Some(sub) if is(sub, "info") => Frame::Array(
            call.args[2..]
                .iter()
                .map(|name| describe(&text(name).to_ascii_lowercase()))
                .collect(),
        ),
        Some(sub) => Frame::Error(
            format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try COMMAND HELP.",
                text(sub)
            )
            .into(),
        ),
    }
}

/// FLUSHDB / FLUSHALL [ASYNC|SYNC]
pub fn flushdb(call: &mut Call<'_>) -> Frame {
    match call.args.get(1) {
        None => {}
        Some(mode) if is(mode, "async") || is(mode, "sync") => {}
        Some(_) => return SYNTAX,
    }
    if call.args.len() > 2 {
        return SYNTAX;
    }
    call.state.engine.flush_all();
    Frame::ok()
}

/// CLUSTER ...: this is not a Redis Cluster (clients such as StackExchange.Redis probe it).
pub fn cluster(_call: &mut Call<'_>) -> Frame {
    Frame::error("ERR This instance has cluster support disabled")
}

/// TIME
pub fn time(_call: &mut Call<'_>) -> Frame {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(now.as_secs().to_string())),
        Frame::Bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn info_and_config() {
        let mut h = Harness::new();
        h.run("SET a 1");
        h.run("SETEX b 100 1");
        let Frame::Verbatim(text) = h.run("INFO") else {
            panic!("not verbatim")
        };
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(text.contains("redis_version:7.2.4\r\n"));
        assert!(text.contains("loading:0\r\n"));
        assert!(text.contains("role:master\r\n"));
        assert!(text.contains("db0:keys=2,expires=1,avg_ttl=0"));
        assert!(text.contains("maxmemory_policy:noeviction\r\n"));
        let Frame::Verbatim(memory) = h.run("INFO memory") else {
            panic!("not verbatim")
        };
        assert!(String::from_utf8_lossy(&memory).starts_with("# Memory\r\nused_memory:"));
        assert_eq!(
            h.run("CONFIG GET maxmemory*"),
            Frame::Map(vec![
                (bulk("maxmemory"), bulk("0")),
                (bulk("maxmemory-policy"), bulk("noeviction"))
            ])
        );
        assert_eq!(h.run("CONFIG SET notify-keyspace-events Egx"), Frame::ok());
        assert_eq!(
            h.run("CONFIG GET notify-keyspace-events"),
            Frame::Map(vec![(bulk("notify-keyspace-events"), bulk("Egx"))])
        );
        assert_eq!(h.run("FLUSHDB"), Frame::ok());
        assert_eq!(h.run("DBSIZE"), Frame::Integer(0));
    }

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
