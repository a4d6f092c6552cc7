//! Server commands: CONFIG GET/SET/RESETSTAT, COMMAND (COUNT DOCS INFO), FLUSHDB/FLUSHALL,
//! CLUSTER, TIME.

use bytes::Bytes;

use super::flags::{LOADING_OK, WRITE};
use super::CommandSpec;
use super::{commands, is, settings, text, Call, SYNTAX};
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
    let mut values = vec![
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
    ];
    for parameter in settings::PARAMETERS {
        values.push((
            parameter.name,
            settings::value(call.state, parameter.name).to_string(),
        ));
    }
    values
}

/// CONFIG GET pattern [pattern ...] | SET name value [name value ...] | RESETSTAT. SET takes
/// `notify-keyspace-events` and Redis's encoding parameters (`super::settings`).
pub fn config(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let sub = &args[1];
    if is(sub, "get") && args.len() >= 3 {
        let values = config_values(call);
        let mut pairs: Vec<(Frame, Frame)> = values
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
        // A Redis 6 name answers when asked for by name.
        for pattern in &args[2..] {
            if let Some(parameter) = settings::lookup(pattern) {
                if let Some(alias) = parameter.alias {
                    if alias.as_bytes().eq_ignore_ascii_case(pattern) {
                        let value = settings::value(call.state, parameter.name).to_string();
                        pairs.push((
                            Frame::bulk(alias.as_bytes()),
                            Frame::Bulk(Bytes::from(value)),
                        ));
                    }
                }
            }
        }
        Frame::Map(pairs)
    } else if is(sub, "set") && args.len() >= 4 && args.len().is_multiple_of(2) {
        let unknown = args[2..].chunks_exact(2).find(|pair| {
            !is(&pair[0], "notify-keyspace-events") && settings::lookup(&pair[0]).is_none()
        });
        if let Some(pair) = unknown {
            return Frame::Error(
                format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    text(&pair[0])
                )
                .into(),
            );
        }
        for pair in args[2..].chunks_exact(2) {
            if is(&pair[0], "notify-keyspace-events") {
                call.state.set_notify_keyspace_events(text(&pair[1]));
            } else if let Some(parameter) = settings::lookup(&pair[0]) {
                if let Err(error) = settings::set(call.state, parameter, &pair[1]) {
                    return Frame::Error(error.into());
                }
            }
        }
        Frame::ok()
    } else if is(sub, "set") && args.len() >= 3 {
        Frame::error("ERR wrong number of arguments for 'config|set' command")
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

/// The first key, last key and step of a command's keys (Redis's legacy key positions).
fn key_positions(name: &str) -> (i64, i64, i64) {
    match name {
        "ping" | "echo" | "quit" | "auth" | "hello" | "select" | "client" | "reset" | "config"
        | "command" | "info" | "flushdb" | "flushall" | "time" | "cluster" | "multi" | "exec"
        | "discard" | "unwatch" | "dbsize" | "randomkey" | "keys" | "scan" | "sintercard" => {
            (0, 0, 0)
        }
        "del" | "unlink" | "exists" | "touch" | "mget" | "watch" | "sinter" | "sunion"
        | "sdiff" | "sinterstore" | "sunionstore" | "sdiffstore" => (1, -1, 1),
        "mset" | "msetnx" => (1, -1, 2),
        "rename" | "renamenx" | "smove" | "lmove" | "rpoplpush" | "copy" | "zrangestore" => {
            (1, 2, 1)
        }
        _ => (1, 1, 1),
    }
}

/// The group COMMAND DOCS reports for a command, by the family that implements it.
fn group(spec: &CommandSpec) -> &'static str {
    let families: [(&[CommandSpec], &str); 11] = [
        (super::strings::COMMANDS, "string"),
        (super::counters::COMMANDS, "string"),
        (super::keys::COMMANDS, "generic"),
        (super::objects::COMMANDS, "generic"),
        (super::hashes::COMMANDS, "hash"),
        (super::sets::COMMANDS, "set"),
        (super::zsets::COMMANDS, "sorted-set"),
        (super::zranges::COMMANDS, "sorted-set"),
        (super::lists::COMMANDS, "list"),
        (super::transaction::COMMANDS, "transactions"),
        (super::connection::COMMANDS, "connection"),
    ];
    families
        .iter()
        .find(|(family, _)| family.iter().any(|own| std::ptr::eq(own, spec)))
        .map_or("server", |(_, group)| group)
}

/// COMMAND INFO's description of one command (Redis 7's ten fields).
fn describe(spec: &CommandSpec) -> Frame {
    use super::flags::{DENY_OOM, LOADING_OK, NO_AUTH, WRITE};
    let mut flags = vec![if spec.flags & WRITE != 0 {
        "write"
    } else {
        "readonly"
    }];
    for (bit, flag) in [
        (DENY_OOM, "denyoom"),
        (LOADING_OK, "loading"),
        (NO_AUTH, "no_auth"),
    ] {
        if spec.flags & bit != 0 {
            flags.push(flag);
        }
    }
    let (first, last, step) = key_positions(spec.name);
    Frame::Array(vec![
        Frame::bulk(spec.name.as_bytes()),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Set(
            flags
                .into_iter()
                .map(|flag| Frame::Simple(flag.into()))
                .collect(),
        ),
        Frame::Integer(first),
        Frame::Integer(last),
        Frame::Integer(step),
        Frame::Set(vec![Frame::Simple(format!("@{}", group(spec)).into())]),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

/// COMMAND DOCS's entry for one command.
fn docs(spec: &CommandSpec) -> (Frame, Frame) {
    let summary = format!(
        "{} (Redis semantics; see https://redis.io/commands/{})",
        spec.name.to_ascii_uppercase(),
        spec.name
    );
    (
        Frame::bulk(spec.name.as_bytes()),
        Frame::Map(vec![
            (Frame::bulk(b"summary"), Frame::Bulk(Bytes::from(summary))),
            (Frame::bulk(b"since"), Frame::bulk(b"1.0.0")),
            (Frame::bulk(b"group"), Frame::bulk(group(spec).as_bytes())),
        ]),
    )
}

fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    let name = text(name).to_ascii_lowercase();
    commands().iter().copied().find(|spec| spec.name == name)
}

/// COMMAND | COMMAND COUNT | COMMAND DOCS [name ...] | COMMAND INFO [name ...]
pub fn command(call: &mut Call<'_>) -> Frame {
    match call.args.get(1) {
        None => Frame::Array(commands().iter().map(|spec| describe(spec)).collect()),
        Some(sub) if is(sub, "count") => Frame::Integer(commands().len() as i64),
        Some(sub) if is(sub, "docs") => Frame::Map(match call.args.len() {
            2 => commands().iter().map(|spec| docs(spec)).collect(),
            _ => call.args[2..]
                .iter()
                .filter_map(|name| find(name).map(docs))
                .collect(),
        }),
        Some(sub) if is(sub, "info") => Frame::Array(match call.args.len() {
            2 => commands().iter().map(|spec| describe(spec)).collect(),
            _ => call.args[2..]
                .iter()
                .map(|name| find(name).map_or(Frame::Null, describe))
                .collect(),
        }),
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
            h.run("CONFIG SET hash-max-listpack-entries 1 set-max-intset-entries 2"),
            Frame::ok()
        );
        assert_eq!(
            h.run("CONFIG GET hash-max-ziplist-entries"),
            Frame::Map(vec![(bulk("hash-max-ziplist-entries"), bulk("1"))])
        );
        assert_eq!(
            h.run("CONFIG GET *intset*"),
            Frame::Map(vec![(bulk("set-max-intset-entries"), bulk("2"))])
        );
        assert_eq!(
            h.run("CONFIG SET zset-max-listpack-value x"),
            err("ERR CONFIG SET failed (possibly related to argument 'zset-max-listpack-value') - argument couldn't be parsed into an integer")
        );
        assert_eq!(
            h.run("CONFIG SET nope 1"),
            err("ERR Unknown option or number of arguments for CONFIG SET - 'nope'")
        );
        let Frame::Array(info) = h.run("COMMAND INFO sadd nope") else {
            panic!("not an array")
        };
        assert_eq!(info[1], Frame::Null);
        let Frame::Array(sadd) = &info[0] else {
            panic!("not an array")
        };
        assert_eq!(
            sadd[..6],
            [
                bulk("sadd"),
                Frame::Integer(-3),
                Frame::Set(vec![
                    Frame::Simple("write".into()),
                    Frame::Simple("denyoom".into())
                ]),
                Frame::Integer(1),
                Frame::Integer(1),
                Frame::Integer(1),
            ]
        );
        let Frame::Map(docs) = h.run("COMMAND DOCS zadd") else {
            panic!("not a map")
        };
        assert_eq!(docs.len(), 1);
        assert_eq!(h.run("FLUSHDB"), Frame::ok());
        assert_eq!(h.run("DBSIZE"), Frame::Integer(0));
    }
}
