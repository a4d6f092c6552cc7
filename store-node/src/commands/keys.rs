//! Key commands: DEL/UNLINK, EXISTS, EXPIRE family (NX XX GT LT), PERSIST, TTL/PTTL,
//! EXPIRETIME/PEXPIRETIME, TYPE, RENAME/RENAMENX, SCAN, KEYS, DBSIZE, TOUCH.

use bytes::Bytes;

use super::flags::WRITE;
use super::CommandSpec;
use super::{is, parse_i64, text, Call, KeyspaceEvents, NOT_INTEGER, SYNTAX};
use crate::protocol::Frame;
use crate::store::{glob, unix_ms, Kind, Op};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("del", -2, WRITE, del),
    spec!("unlink", -2, WRITE, del),
    spec!("exists", -2, 0, exists),
    spec!("expire", -3, WRITE, expire),
    spec!("pexpire", -3, WRITE, pexpire),
    spec!("expireat", -3, WRITE, expireat),
    spec!("pexpireat", -3, WRITE, pexpireat),
    spec!("persist", 2, WRITE, persist),
    spec!("ttl", 2, 0, ttl),
    spec!("pttl", 2, 0, pttl),
    spec!("expiretime", 2, 0, expiretime),
    spec!("pexpiretime", 2, 0, pexpiretime),
    spec!("type", 2, 0, type_),
    spec!("rename", 3, WRITE, rename),
    spec!("renamenx", 3, WRITE, renamenx),
    spec!("scan", -2, 0, scan),
    spec!("keys", 2, 0, keys),
    spec!("dbsize", 1, 0, dbsize),
    spec!("touch", -2, 0, touch),
];

/// DEL key [key ...] (also UNLINK)
pub fn del(call: &mut Call<'_>) -> Frame {
    let mut removed = 0;
    for key in &call.args[1..] {
        let mut access = call.state.engine.key(key);
        if access.get().is_some() {
            call.wrote(access.write(Op::Delete { key: key.clone() }));
            call.notify(KeyspaceEvents::GENERIC, "del", key);
            removed += 1;
        }
    }
    Frame::Integer(removed)
}

/// EXISTS key [key ...]: repeated keys count repeatedly.
pub fn exists(call: &mut Call<'_>) -> Frame {
    let found = call.args[1..]
        .iter()
        .filter(|key| call.state.engine.key(key).get().is_some())
        .count();
    Frame::Integer(found as i64)
}

/// TOUCH key [key ...]
pub fn touch(call: &mut Call<'_>) -> Frame {
    exists(call)
}

fn set_expiry(call: &mut Call<'_>, unit_ms: i64, absolute: bool, command: &str) -> Frame {
    let args = call.args;
    let Some(value) = parse_i64(&args[2]) else {
        return NOT_INTEGER;
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        if is(option, "nx") {
            nx = true;
        } else if is(option, "xx") {
            xx = true;
        } else if is(option, "gt") {
            gt = true;
        } else if is(option, "lt") {
            lt = true;
        } else {
            return Frame::Error(format!("ERR Unsupported option {}", text(option)).into());
        }
    }
    if nx && (xx || gt || lt) {
        return Frame::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Frame::error("ERR GT and LT options at the same time are not compatible");
    }
    let now = unix_ms();
    let invalid = || Frame::Error(format!("ERR invalid expire time in '{command}' command").into());
    let Some(millis) = value.checked_mul(unit_ms) else {
        return invalid();
    };
    let at = if absolute {
        Some(millis)
    } else {
        millis.checked_add(now as i64)
    };
    let Some(at) = at else {
        return invalid();
    };
    let mut access = call.state.engine.key_at(&args[1], now);
    let current = match access.get() {
        None => return Frame::Integer(0),
        Some(entry) => entry.expire_at(),
    };
    // GT/LT treat a key without a TTL as having an infinite one.
    let current_value = current.map_or(i128::MAX, i128::from);
    let allowed = !(nx && current.is_some()
        || xx && current.is_none()
        || gt && i128::from(at) <= current_value
        || lt && i128::from(at) >= current_value);
    if !allowed {
        return Frame::Integer(0);
    }
    if at <= now as i64 {
        call.wrote(access.write(Op::Delete {
            key: args[1].clone(),
        }));
        call.notify(KeyspaceEvents::GENERIC, "del", &args[1]);
    } else {
        call.wrote(access.write(Op::SetExpiry {
            key: args[1].clone(),
            expire_at: Some(at as u64),
        }));
        call.notify(KeyspaceEvents::GENERIC, "expire", &args[1]);
    }
    Frame::Integer(1)
}

/// EXPIRE key seconds [NX|XX|GT|LT]
pub fn expire(call: &mut Call<'_>) -> Frame {
    set_expiry(call, 1000, false, "expire")
}

/// PEXPIRE key milliseconds [NX|XX|GT|LT]
pub fn pexpire(call: &mut Call<'_>) -> Frame {
    set_expiry(call, 1, false, "pexpire")
}

/// EXPIREAT key unix-seconds [NX|XX|GT|LT]
pub fn expireat(call: &mut Call<'_>) -> Frame {
    set_expiry(call, 1000, true, "expireat")
}

/// PEXPIREAT key unix-ms [NX|XX|GT|LT]
pub fn pexpireat(call: &mut Call<'_>) -> Frame {
    set_expiry(call, 1, true, "pexpireat")
}

/// PERSIST key
pub fn persist(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    match access.get().map(|entry| entry.expire_at()) {
        Some(Some(_)) => {
            call.wrote(access.write(Op::SetExpiry {
                key: call.args[1].clone(),
                expire_at: None,
            }));
            call.notify(KeyspaceEvents::GENERIC, "persist", &call.args[1]);
            Frame::Integer(1)
        }
        _ => Frame::Integer(0),
    }
}

/// Reads the expiry: Err(-2) missing, Err(-1) no TTL.
fn expiry_of(call: &mut Call<'_>) -> Result<(u64, u64), i64> {
    let mut access = call.state.engine.key(&call.args[1]);
    let now = access.now();
    match access.get() {
        None => Err(-2),
        Some(entry) => entry.expire_at().map(|at| (at, now)).ok_or(-1),
    }
}

/// TTL key: seconds, rounded like Redis.
pub fn ttl(call: &mut Call<'_>) -> Frame {
    Frame::Integer(match expiry_of(call) {
        Ok((at, now)) => ((at.saturating_sub(now) + 500) / 1000) as i64,
        Err(code) => code,
    })
}

/// PTTL key
pub fn pttl(call: &mut Call<'_>) -> Frame {
    Frame::Integer(match expiry_of(call) {
        Ok((at, now)) => at.saturating_sub(now) as i64,
        Err(code) => code,
    })
}

/// EXPIRETIME key
pub fn expiretime(call: &mut Call<'_>) -> Frame {
    Frame::Integer(match expiry_of(call) {
        Ok((at, _)) => (at / 1000) as i64,
        Err(code) => code,
    })
}

/// PEXPIRETIME key
pub fn pexpiretime(call: &mut Call<'_>) -> Frame {
    Frame::Integer(match expiry_of(call) {
        Ok((at, _)) => at as i64,
        Err(code) => code,
    })
}

/// TYPE key
pub fn type_(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let name = access.get().map_or("none", |entry| entry.kind().name());
    Frame::Simple(name.into())
}

/// Renames and publishes Redis's events: `new` for the target (even one that existed: Redis
/// deletes and re-adds it; the engine announces a target it creates), `rename_from`,
/// `rename_to`; none when nothing moved.
fn rename_key(call: &mut Call<'_>, only_if_absent: bool) -> Option<bool> {
    let args = call.args;
    let (from, to) = (&args[1], &args[2]);
    let replaces = !only_if_absent
        && from != to
        && call.state.notifier.wants(KeyspaceEvents::NEW)
        && call.state.engine.key(to).get().is_some();
    let (outcome, receipt) = call.state.engine.rename(from, to, only_if_absent);
    call.wrote(receipt);
    if outcome == Some(true) && from != to {
        if replaces {
            call.notify(KeyspaceEvents::NEW, "new", to);
        }
        call.notify(KeyspaceEvents::GENERIC, "rename_from", from);
        call.notify(KeyspaceEvents::GENERIC, "rename_to", to);
    }
    outcome
}

/// RENAME key newkey
pub fn rename(call: &mut Call<'_>) -> Frame {
    match rename_key(call, false) {
        None => Frame::error("ERR no such key"),
        Some(_) => Frame::ok(),
    }
}

/// RENAMENX key newkey
pub fn renamenx(call: &mut Call<'_>) -> Frame {
    match rename_key(call, true) {
        None => Frame::error("ERR no such key"),
        Some(renamed) => Frame::Integer(i64::from(renamed)),
    }
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]
pub fn scan(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let cursor = match std::str::from_utf8(&args[1])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    {
        Some(cursor) => cursor,
        None => return Frame::error("ERR invalid cursor"),
    };
    let mut pattern: Option<&Bytes> = None;
    let mut count = 10usize;
    let mut kind: Option<Option<Kind>> = None;
    let mut index = 2;
    while index < args.len() {
        let Some(value) = args.get(index + 1) else {
            return SYNTAX;
        };
        if is(&args[index], "match") {
            pattern = Some(value);
        } else if is(&args[index], "count") {
            match parse_i64(value) {
                Some(value) if value >= 1 => count = value as usize,
                Some(_) => return SYNTAX,
                None => return NOT_INTEGER,
            }
        } else if is(&args[index], "type") {
            kind = Some(Kind::from_name(value));
        } else {
            return SYNTAX;
        }
        index += 2;
    }
    let mut keys = Vec::new();
    let next = call.state.engine.scan(cursor, count, |entry| {
        if pattern.is_some_and(|pattern| !glob::matches(pattern, entry.key())) {
            return;
        }
        if let Some(wanted) = kind {
            if wanted != Some(entry.kind()) {
                return;
            }
        }
        keys.push(Frame::bulk(entry.key()));
    });
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(next.to_string())),
        Frame::Array(keys),
    ])
}

/// KEYS pattern
pub fn keys(call: &mut Call<'_>) -> Frame {
    let pattern = &call.args[1];
    let mut keys = Vec::new();
    call.state.engine.for_each(|entry| {
        if glob::matches(pattern, entry.key()) {
            keys.push(Frame::bulk(entry.key()));
        }
    });
    Frame::Array(keys)
}

/// DBSIZE
pub fn dbsize(call: &mut Call<'_>) -> Frame {
    Frame::Integer(call.state.engine.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn expire_options() {
        let mut h = Harness::new();
        assert_eq!(h.run("EXPIRE nokey 10"), Frame::Integer(0));
        h.run("SET k v");
        assert_eq!(h.run("TTL k"), Frame::Integer(-1));
        assert_eq!(h.run("TTL nokey"), Frame::Integer(-2));
        assert_eq!(h.run("EXPIRE k 10 XX"), Frame::Integer(0));
        assert_eq!(h.run("EXPIRE k 10 GT"), Frame::Integer(0));
        assert_eq!(h.run("EXPIRE k 10 LT"), Frame::Integer(1));
        assert_eq!(h.run("EXPIRE k 20 NX"), Frame::Integer(0));
        assert_eq!(h.run("EXPIRE k 20 GT"), Frame::Integer(1));
        assert_eq!(h.run("TTL k"), Frame::Integer(20));
        assert_eq!(
            h.run("EXPIRE k 20 NX XX"),
            err("ERR NX and XX, GT or LT options at the same time are not compatible")
        );
        assert_eq!(
            h.run("EXPIRE k 20 GT LT"),
            err("ERR GT and LT options at the same time are not compatible")
        );
        assert_eq!(h.run("EXPIRE k 20 FOO"), err("ERR Unsupported option FOO"));
        assert_eq!(
            h.run("EXPIRE k abc"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("PERSIST k"), Frame::Integer(1));
        assert_eq!(h.run("PERSIST k"), Frame::Integer(0));
        assert_eq!(h.run("PEXPIREAT k 4102444800000"), Frame::Integer(1));
        assert_eq!(h.run("EXPIRETIME k"), Frame::Integer(4102444800));
        assert_eq!(h.run("PEXPIRETIME k"), Frame::Integer(4102444800000));
        assert_eq!(h.run("EXPIRE k 0"), Frame::Integer(1));
        assert_eq!(h.run("EXISTS k"), Frame::Integer(0));
        h.run("SET k v");
        assert_eq!(h.run("EXPIREAT k 1"), Frame::Integer(1));
        assert_eq!(h.run("GET k"), Frame::Null);
    }

    #[test]
    fn del_exists_type_rename() {
        let mut h = Harness::new();
        h.run("SET a 1");
        h.run("HSET h f v");
        assert_eq!(h.run("EXISTS a a b h"), Frame::Integer(3));
        assert_eq!(h.run("TYPE a"), Frame::Simple("string".into()));
        assert_eq!(h.run("TYPE h"), Frame::Simple("hash".into()));
        assert_eq!(h.run("TYPE x"), Frame::Simple("none".into()));
        assert_eq!(h.run("RENAME x y"), err("ERR no such key"));
        assert_eq!(h.run("RENAME a b"), Frame::ok());
        assert_eq!(h.run("GET b"), bulk("1"));
        assert_eq!(h.run("RENAMENX b h"), Frame::Integer(0));
        assert_eq!(h.run("DBSIZE"), Frame::Integer(2));
        assert_eq!(h.run("DEL b h b x"), Frame::Integer(2));
        assert_eq!(h.run("DBSIZE"), Frame::Integer(0));
    }

    #[test]
    fn scan_and_keys() {
        let mut h = Harness::new();
        for index in 0..50 {
            h.run(&format!("SET sess:{index} v"));
        }
        h.run("SET other v");
        h.run("HSET sess:h f v");
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = "0".to_string();
        loop {
            let Frame::Array(reply) =
                h.run(&format!("SCAN {cursor} MATCH sess:* COUNT 7 TYPE string"))
            else {
                panic!("not an array");
            };
            let (Frame::Bulk(next), Frame::Array(keys)) = (&reply[0], &reply[1]) else {
                panic!("bad reply");
            };
            for key in keys {
                let Frame::Bulk(key) = key else {
                    panic!("bad key")
                };
                seen.insert(String::from_utf8_lossy(key).into_owned());
            }
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 50);
        assert!(!seen.contains("other") && !seen.contains("sess:h"));
        assert_eq!(h.run("SCAN x"), err("ERR invalid cursor"));
        assert_eq!(h.run("SCAN 0 COUNT 0"), err("ERR syntax error"));
        let Frame::Array(keys) = h.run("KEYS sess:4?") else {
            panic!("not an array")
        };
        assert_eq!(keys.len(), 10);
    }
}
