//! Server commands: CONFIG GET/SET (notify-keyspace-events, replica-serve-stale-data)/RESETSTAT, COMMAND, FLUSHDB/FLUSHALL, CLUSTER, TIME.

use bytes::Bytes;

use super::flags::{LOADING_OK, WRITE};
use super::CommandSpec;
use super::{commands, is, text, Call, SYNTAX};
use crate::protocol::Frame;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("config", -2, LOADING_OK, config),
    spec!("command", -1, LOADING_OK, command),
    spec!("flushdb", -1, WRITE, flushdb),
    spec!("flushall", -1, WRITE, flushdb),
    spec!("time", 1, LOADING_OK, time),
    spec!("cluster", -2, 0, cluster),
];

fn config_values(call: &Call<'_>) -> Vec<(&'static str, String)> {
    let memory = call.state.engine.memory();
    vec![
        ("maxmemory", memory.limit_bytes.to_string()),
        ("maxmemory-policy", memory.policy.as_str().to_string()),
        ("maxclients", call.state.config.max_clients.to_string()),
        ("timeout", call.state.config.client_idle_timeout.to_string()),
        (
            "client-query-buffer-limit",
            call.state.config.client_query_buffer_limit.to_string(),
        ),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        (
            "notify-keyspace-events",
            call.state.notify_keyspace_events(),
        ),
        ("port", call.state.config.resp_port.to_string()),
        (
            "replica-serve-stale-data",
            if call.state.serve_stale_data() {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
    ]
}

/// CONFIG GET pattern [pattern ...] | SET notify-keyspace-events|replica-serve-stale-data value
/// | RESETSTAT
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
        } else if is(&args[2], "replica-serve-stale-data") {
            // Redis's yes/no (its boolean parser takes only these two, any case).
            if is(&args[3], "yes") {
                call.state.set_serve_stale_data(true);
            } else if is(&args[3], "no") {
                call.state.set_serve_stale_data(false);
            } else {
                return Frame::error(
                    "ERR CONFIG SET failed (possibly related to argument 'replica-serve-stale-data') - argument must be 'yes' or 'no'",
                );
            }
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
        commands()
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
        None => Frame::Array(commands().iter().map(|spec| describe(spec.name)).collect()),
        Some(sub) if is(sub, "count") => Frame::Integer(commands().len() as i64),
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
    let receipt = call.state.engine.flush_all();
    call.wrote(receipt);
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
}
