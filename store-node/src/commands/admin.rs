//! Server commands: CONFIG GET/SET/RESETSTAT, COMMAND, FLUSHDB/FLUSHALL, CLUSTER, TIME. CONFIG
//! SET takes `notify-keyspace-events`, `replica-serve-stale-data`, Redis's client limits
//! (`proto-max-bulk-len`, `client-query-buffer-limit`, `maxmemory-clients`,
//! `proto-max-multibulk-len`), `client-output-buffer-limit` (its `pubsub` class) and
//! `busy-reply-threshold` (`lua-time-limit`).

use bytes::Bytes;

use super::flags::{LOADING_OK, NO_SCRIPT, WRITE};
use super::CommandSpec;
use super::{commands, is, no_permission, text, Call, SYNTAX};
use crate::config::{parse_buffer_limit, parse_memory_or_percent};
use crate::node::users::Role;
use crate::protocol::Frame;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("config", -2, LOADING_OK | NO_SCRIPT, config),
    spec!("command", -1, LOADING_OK, command),
    spec!("flushdb", -1, WRITE, flushdb),
    spec!("flushall", -1, WRITE, flushdb),
    spec!("time", 1, LOADING_OK, time),
    spec!("cluster", -2, 0, cluster),
];

fn config_values(call: &Call<'_>) -> Vec<(&'static str, String)> {
    let memory = call.state.engine.memory();
    let limits = &call.state.client_limits;
    let config = &call.state.config;
    let yes_no = |value: bool| if value { "yes" } else { "no" }.to_string();
    vec![
        ("maxmemory", memory.limit_bytes.to_string()),
        ("maxmemory-policy", memory.policy.as_str().to_string()),
        ("maxmemory-clients", limits.maxmemory_clients().to_string()),
        (
            "proto-max-bulk-len",
            limits.proto_max_bulk_len().to_string(),
        ),
        (
            "proto-max-multibulk-len",
            limits.proto_max_multibulk_len().to_string(),
        ),
        (
            "client-query-buffer-limit",
            limits.query_buffer_limit().to_string(),
        ),
        ("tls-port", config.tls_port.to_string()),
        (
            "tls-auth-clients",
            config.tls_auth_clients.as_str().to_string(),
        ),
        ("tls-replication", yes_no(config.tls_replication)),
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
        (
            "replica-serve-stale-data",
            if call.state.serve_stale_data() {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
        ("client-output-buffer-limit", {
            let limit = call.state.pubsub.output_limit();
            format!(
                "normal 0 0 0 slave 268435456 67108864 60 pubsub {} {} {}",
                limit.hard, limit.soft, limit.soft_seconds
            )
        }),
        (
            "busy-reply-threshold",
            call.state.scripts.busy_threshold_ms().to_string(),
        ),
        (
            "lua-time-limit",
            call.state.scripts.busy_threshold_ms().to_string(),
        ),
    ]
}

/// `CONFIG SET client-output-buffer-limit "<class> <hard> <soft> <seconds> ..."`: the
/// `pubsub` class applies to subscribers; `normal` and `replica` (`slave`) are accepted and
/// have no effect (replies to ordinary clients are flushed every 1 MiB instead).
fn set_output_limit(call: &Call<'_>, value: &str) -> Result<(), String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".to_string());
    }
    let mut pubsub = None;
    for class in words.chunks(4) {
        let parse = |text: &str| {
            crate::config::parse_memory(text).map_err(|_| {
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
            })
        };
        let hard = parse(class[1])?;
        let soft = parse(class[2])?;
        let seconds = class[3].parse::<u64>().map_err(|_| {
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.".to_string()
        })?;
        match class[0].to_ascii_lowercase().as_str() {
            "pubsub" => {
                pubsub = Some(crate::pubsub::OutputLimit {
                    hard,
                    soft,
                    soft_seconds: seconds,
                })
            }
            "normal" | "slave" | "replica" => {}
            _ => {
                return Err(
                    "Invalid client class specified in buffer limit configuration.".to_string(),
                )
            }
        }
    }
    if let Some(limit) = pubsub {
        call.state.pubsub.set_output_limit(limit);
    }
    Ok(())
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
        config_set(call)
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

/// CONFIG SET name value: `notify-keyspace-events`, and the client limits (Redis's names and
/// error texts). A read-only user may not change the node.
fn config_set(call: &mut Call<'_>) -> Frame {
    if call.client.role() == Role::ReadOnly {
        return no_permission(call.client, "config|set");
    }
    let name = text(&call.args[2]).to_ascii_lowercase();
    let value = text(&call.args[3]);
    let limits = &call.state.client_limits;
    let applied = match name.as_str() {
        "notify-keyspace-events" => call.state.set_notify_keyspace_events(&value),
        "replica-serve-stale-data" => {
            // Redis's yes/no (its boolean parser takes only these two, any case).
            if value.eq_ignore_ascii_case("yes") {
                call.state.set_serve_stale_data(true);
                Ok(())
            } else if value.eq_ignore_ascii_case("no") {
                call.state.set_serve_stale_data(false);
                Ok(())
            } else {
                Err("argument must be 'yes' or 'no'".to_string())
            }
        }
        "client-output-buffer-limit" => set_output_limit(call, &value),
        "busy-reply-threshold" | "lua-time-limit" => match value.parse::<u64>() {
            Ok(milliseconds) => {
                call.state.scripts.set_busy_threshold_ms(milliseconds);
                Ok(())
            }
            Err(_) => Err("argument couldn't be parsed into an integer".to_string()),
        },
        "proto-max-bulk-len" => {
            parse_buffer_limit(&value).map(|bytes| limits.set_proto_max_bulk_len(bytes))
        }
        "client-query-buffer-limit" => {
            parse_buffer_limit(&value).map(|bytes| limits.set_query_buffer_limit(bytes))
        }
        "maxmemory-clients" => {
            parse_memory_or_percent(&value).map(|cap| limits.set_maxmemory_clients(cap))
        }
        "proto-max-multibulk-len" => match value.parse::<u64>() {
            Ok(count) if (1..=i32::MAX as u64).contains(&count) => {
                limits.set_proto_max_multibulk_len(count);
                Ok(())
            }
            _ => Err(format!(
                "argument must be between 1 and {} inclusive",
                i32::MAX
            )),
        },
        _ => {
            return Frame::Error(
                format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    text(&call.args[2])
                )
                .into(),
            )
        }
    };
    match applied {
        Ok(()) => {
            tracing::info!(client = call.client.id, parameter = %name, value = %text(&call.args[3]), "CONFIG SET");
            Frame::ok()
        }
        Err(reason) => Frame::Error(
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
                .into(),
        ),
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
                (bulk("maxmemory-policy"), bulk("noeviction")),
                (bulk("maxmemory-clients"), bulk("25%")),
            ])
        );
        assert_eq!(h.run("CONFIG SET notify-keyspace-events Egx"), Frame::ok());
        assert_eq!(
            h.run("CONFIG GET notify-keyspace-events"),
            Frame::Map(vec![(bulk("notify-keyspace-events"), bulk("gxE"))])
        );
        assert_eq!(
            h.run("CONFIG GET client-output-buffer-limit"),
            Frame::Map(vec![(
                bulk("client-output-buffer-limit"),
                bulk("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60")
            )])
        );
        let args: Vec<bytes::Bytes> = [
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 512kb 5",
        ]
        .iter()
        .map(|arg| bytes::Bytes::copy_from_slice(arg.as_bytes()))
        .collect();
        assert_eq!(
            crate::commands::execute(&h.state, &mut h.client, &args).reply,
            Frame::ok()
        );
        assert_eq!(
            h.state.pubsub.output_limit(),
            crate::pubsub::OutputLimit {
                hard: 1 << 20,
                soft: 512 << 10,
                soft_seconds: 5
            }
        );
        assert_eq!(h.run("CONFIG SET busy-reply-threshold 100"), Frame::ok());
        assert_eq!(
            h.run("CONFIG GET lua-time-limit"),
            Frame::Map(vec![(bulk("lua-time-limit"), bulk("100"))])
        );
        assert_eq!(
            h.run("CONFIG SET busy-reply-threshold x"),
            err("ERR CONFIG SET failed (possibly related to argument 'busy-reply-threshold') - argument couldn't be parsed into an integer")
        );
        assert_eq!(h.run("FLUSHDB"), Frame::ok());
        assert_eq!(h.run("DBSIZE"), Frame::Integer(0));
    }

    #[test]
    fn client_limits_are_set_with_redis_names_and_texts() {
        let mut h = Harness::new();
        // The texts of redis-server 7.0.15 for the same commands.
        assert_eq!(
            h.run("CONFIG SET proto-max-bulk-len abc"),
            err("ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be a memory value")
        );
        assert_eq!(
            h.run("CONFIG SET proto-max-bulk-len 100"),
            err("ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive")
        );
        assert_eq!(
            h.run("CONFIG SET client-query-buffer-limit 100"),
            err("ERR CONFIG SET failed (possibly related to argument 'client-query-buffer-limit') - argument must be between 1048576 and 9223372036854775807 inclusive")
        );
        assert_eq!(
            h.run("CONFIG SET maxmemory-clients 101%"),
            err("ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - percentage argument must be less or equal to 100")
        );
        assert_eq!(
            h.run("CONFIG SET maxmemory-clients abc"),
            err("ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - argument must be a memory or percent value")
        );
        assert_eq!(h.run("CONFIG SET proto-max-bulk-len 1mb"), Frame::ok());
        assert_eq!(
            h.run("CONFIG SET client-query-buffer-limit 2gb"),
            Frame::ok()
        );
        assert_eq!(h.run("CONFIG SET maxmemory-clients 10%"), Frame::ok());
        assert_eq!(h.run("CONFIG SET proto-max-multibulk-len 100"), Frame::ok());
        assert_eq!(
            h.run("CONFIG GET proto-max-bulk-len"),
            Frame::Map(vec![(bulk("proto-max-bulk-len"), bulk("1048576"))])
        );
        assert_eq!(
            h.run("CONFIG GET client-query-buffer-limit"),
            Frame::Map(vec![(
                bulk("client-query-buffer-limit"),
                bulk("2147483648")
            )])
        );
        assert_eq!(
            h.run("CONFIG GET maxmemory-clients"),
            Frame::Map(vec![(bulk("maxmemory-clients"), bulk("10%"))])
        );
        let limits = h.state.client_limits.request_limits();
        assert_eq!((limits.max_bulk_len, limits.max_args), (1048576, 100));
        assert_eq!(
            h.run("CONFIG SET proto-max-nothing 1"),
            err("ERR Unknown option or number of arguments for CONFIG SET - 'proto-max-nothing'")
        );
    }
}
