//! Server commands: CONFIG GET/SET/RESETSTAT, COMMAND, FLUSHDB/FLUSHALL, CLUSTER, TIME. CONFIG
//! SET takes `notify-keyspace-events`, `client-output-buffer-limit` (its `pubsub` class) and
//! `busy-reply-threshold` (`lua-time-limit`).

use bytes::Bytes;

use super::flags::{LOADING_OK, NO_SCRIPT, WRITE};
use super::CommandSpec;
use super::{commands, is, text, Call, SYNTAX};
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

/// Redis's `memtoull`: digits with an optional unit (`k` 1000, `kb` 1024, `m`, `mb`, `g`,
/// `gb`, case-insensitive).
fn parse_memory(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
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
            parse_memory(text)
                .ok_or("Error in hard, soft or soft_seconds setting in buffer limit configuration.")
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
        let refuse = |reason: String| {
            Frame::Error(
                format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
                    text(&args[2]).to_ascii_lowercase()
                )
                .into(),
            )
        };
        if is(&args[2], "notify-keyspace-events") {
            call.state.set_notify_keyspace_events(text(&args[3]));
            Frame::ok()
        } else if is(&args[2], "client-output-buffer-limit") {
            match set_output_limit(call, &text(&args[3])) {
                Ok(()) => Frame::ok(),
                Err(reason) => refuse(reason),
            }
        } else if is(&args[2], "busy-reply-threshold") || is(&args[2], "lua-time-limit") {
            match text(&args[3]).parse::<u64>() {
                Ok(milliseconds) => {
                    call.state.scripts.set_busy_threshold_ms(milliseconds);
                    Frame::ok()
                }
                Err(_) => refuse("argument couldn't be parsed into an integer".to_string()),
            }
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
}
