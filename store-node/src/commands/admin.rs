//! Server commands: CONFIG (in [`super::configure`]), COMMAND (COUNT DOCS INFO),
//! FLUSHDB/FLUSHALL, CLUSTER, TIME.

use bytes::Bytes;

use super::configure::config;
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

    #[test]
    fn encoding_parameters_and_command_docs() {
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
