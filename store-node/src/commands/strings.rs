//! String commands: GET, SET (NX XX GET EX PX EXAT PXAT KEEPTTL), SETEX, PSETEX, SETNX, GETEX,
//! GETDEL, GETSET, MGET, MSET, MSETNX, APPEND, STRLEN, GETRANGE, SETRANGE (the counters INCR...
//! INCRBYFLOAT are `super::counters`).

use bytes::Bytes;

use super::flags::{DENY_OOM, WRITE};
use super::CommandSpec;
use super::{is, parse_i64, Call, KeyspaceEvents, NOT_INTEGER, SYNTAX, WRONG_TYPE};
use crate::protocol::Frame;
use crate::store::{Entry, Kind, Op, Value};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("get", 2, 0, get),
    spec!("set", -3, WRITE | DENY_OOM, set),
    spec!("setex", 4, WRITE | DENY_OOM, setex),
    spec!("psetex", 4, WRITE | DENY_OOM, psetex),
    spec!("setnx", 3, WRITE | DENY_OOM, setnx),
    spec!("getex", -2, WRITE, getex),
    spec!("getdel", 2, WRITE, getdel),
    spec!("getset", 3, WRITE | DENY_OOM, getset),
    spec!("mget", -2, 0, mget),
    spec!("mset", -3, WRITE | DENY_OOM, mset),
    spec!("msetnx", -3, WRITE | DENY_OOM, msetnx),
    spec!("append", 3, WRITE | DENY_OOM, append),
    spec!("strlen", 2, 0, strlen),
    spec!("getrange", 4, 0, getrange),
    spec!("substr", 4, 0, getrange),
    spec!("setrange", 4, WRITE | DENY_OOM, setrange),
];

/// Redis's `proto-max-bulk-len`: the longest string SETRANGE and APPEND may make.
const MAX_STRING: usize = 512 * 1024 * 1024;

fn invalid_expire(command: &str) -> Frame {
    Frame::Error(format!("ERR invalid expire time in '{command}' command").into())
}

/// Converts a relative or absolute time argument into absolute Unix ms, like Redis's
/// `getExpireMillisecondsOrReply`: non-integers are `NOT_INTEGER`, non-positive values and
/// overflows are "invalid expire time".
fn absolute_ms(
    arg: &[u8],
    unit_ms: i64,
    absolute: bool,
    now: u64,
    command: &str,
) -> Result<u64, Frame> {
    let value = parse_i64(arg).ok_or(NOT_INTEGER)?;
    if value <= 0 {
        return Err(invalid_expire(command));
    }
    let millis = value
        .checked_mul(unit_ms)
        .ok_or_else(|| invalid_expire(command))?;
    let at = if absolute {
        millis
    } else {
        millis
            .checked_add(now as i64)
            .ok_or_else(|| invalid_expire(command))?
    };
    Ok(at as u64)
}

/// The string of a live string entry (a counter's sum).
fn text(entry: &Entry) -> Bytes {
    entry
        .string()
        .map(|value| Bytes::copy_from_slice(&value))
        .unwrap_or_default()
}

fn string_value(call: &mut Call<'_>) -> Result<Option<Bytes>, Frame> {
    let mut access = call.state.engine.key(&call.args[1]);
    match access.get() {
        None => Ok(None),
        Some(entry) if entry.kind() != Kind::String => Err(WRONG_TYPE),
        Some(entry) => Ok(Some(text(entry))),
    }
}

/// GET key
pub fn get(call: &mut Call<'_>) -> Frame {
    match string_value(call) {
        Ok(Some(value)) => Frame::Bulk(value),
        Ok(None) => Frame::Null,
        Err(error) => error,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

#[derive(Clone, Copy, PartialEq)]
enum Expiry {
    None,
    Keep,
    At(u64),
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
pub fn set(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let mut condition = Condition::Always;
    let mut return_old = false;
    let mut expiry = Expiry::None;
    let mut expiry_given = false;
    let now = crate::store::unix_ms();
    let mut index = 3;
    while index < args.len() {
        let option = &args[index];
        let next = args.get(index + 1);
        if is(option, "nx") && condition == Condition::Always {
            condition = Condition::IfAbsent;
        } else if is(option, "xx") && condition == Condition::Always {
            condition = Condition::IfPresent;
        } else if is(option, "get") && !return_old {
            return_old = true;
        } else if is(option, "keepttl") && !expiry_given {
            expiry = Expiry::Keep;
            expiry_given = true;
        } else if !expiry_given
            && next.is_some()
            && ["ex", "px", "exat", "pxat"]
                .iter()
                .any(|name| is(option, name))
        {
            let (unit, absolute) = if is(option, "ex") {
                (1000, false)
            } else if is(option, "px") {
                (1, false)
            } else if is(option, "exat") {
                (1000, true)
            } else {
                (1, true)
            };
            let Some(value) = next else {
                return SYNTAX;
            };
            match absolute_ms(value, unit, absolute, now, "set") {
                Ok(at) => expiry = Expiry::At(at),
                Err(error) => return error,
            }
            expiry_given = true;
            index += 1;
        } else {
            return SYNTAX;
        }
        index += 1;
    }
    let mut access = call.state.engine.key_at(&args[1], now);
    let (exists, old_value, old_expiry) = match access.get() {
        None => (false, None, None),
        Some(entry) => {
            if entry.kind() != Kind::String && return_old {
                return WRONG_TYPE;
            }
            let old = return_old.then(|| text(entry));
            (true, old, entry.expire_at())
        }
    };
    let allowed = match condition {
        Condition::Always => true,
        Condition::IfAbsent => !exists,
        Condition::IfPresent => exists,
    };
    if allowed {
        let expire_at = match expiry {
            Expiry::None => None,
            Expiry::Keep => old_expiry,
            Expiry::At(at) => Some(at),
        };
        call.wrote(access.write(Op::Put {
            key: args[1].clone(),
            value: Value::String(args[2].clone()),
            expire_at,
            keep_ttl: expiry == Expiry::Keep && exists,
        }));
        call.notify(KeyspaceEvents::STRING, "set", &args[1]);
        if let Expiry::At(_) = expiry {
            call.notify(KeyspaceEvents::GENERIC, "expire", &args[1]);
        }
    }
    if return_old {
        return old_value.map_or(Frame::Null, Frame::Bulk);
    }
    if allowed {
        Frame::ok()
    } else {
        Frame::Null
    }
}

fn set_with_expiry(call: &mut Call<'_>, unit: i64, command: &str) -> Frame {
    let now = crate::store::unix_ms();
    let at = match absolute_ms(&call.args[2], unit, false, now, command) {
        Ok(at) => at,
        Err(error) => return error,
    };
    let mut access = call.state.engine.key_at(&call.args[1], now);
    call.wrote(access.write(Op::Put {
        key: call.args[1].clone(),
        value: Value::String(call.args[3].clone()),
        expire_at: Some(at),
        keep_ttl: false,
    }));
    call.notify(KeyspaceEvents::STRING, "set", &call.args[1]);
    call.notify(KeyspaceEvents::GENERIC, "expire", &call.args[1]);
    Frame::ok()
}

/// SETEX key seconds value
pub fn setex(call: &mut Call<'_>) -> Frame {
    set_with_expiry(call, 1000, "setex")
}

/// PSETEX key milliseconds value
pub fn psetex(call: &mut Call<'_>) -> Frame {
    set_with_expiry(call, 1, "psetex")
}

/// SETNX key value
pub fn setnx(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    if access.get().is_some() {
        return Frame::Integer(0);
    }
    call.wrote(access.write(Op::Put {
        key: call.args[1].clone(),
        value: Value::String(call.args[2].clone()),
        expire_at: None,
        keep_ttl: false,
    }));
    call.notify(KeyspaceEvents::STRING, "set", &call.args[1]);
    Frame::Integer(1)
}

/// GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]
pub fn getex(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let now = crate::store::unix_ms();
    // None = leave the TTL alone, Some(None) = persist, Some(Some(at)) = set.
    let mut change: Option<Option<u64>> = None;
    let mut index = 2;
    while index < args.len() {
        let option = &args[index];
        if is(option, "persist") && change.is_none() {
            change = Some(None);
        } else if change.is_none()
            && index + 1 < args.len()
            && ["ex", "px", "exat", "pxat"]
                .iter()
                .any(|name| is(option, name))
        {
            let (unit, absolute) = if is(option, "ex") {
                (1000, false)
            } else if is(option, "px") {
                (1, false)
            } else if is(option, "exat") {
                (1000, true)
            } else {
                (1, true)
            };
            match absolute_ms(&args[index + 1], unit, absolute, now, "getex") {
                Ok(at) => change = Some(Some(at)),
                Err(error) => return error,
            }
            index += 1;
        } else {
            return SYNTAX;
        }
        index += 1;
    }
    let mut access = call.state.engine.key_at(&args[1], now);
    let (value, current) = match access.get() {
        None => return Frame::Null,
        Some(entry) if entry.kind() != Kind::String => return WRONG_TYPE,
        Some(entry) => (text(entry), entry.expire_at()),
    };
    match change {
        Some(Some(at)) if at <= now => {
            call.wrote(access.write(Op::Delete {
                key: args[1].clone(),
            }));
            call.notify(KeyspaceEvents::GENERIC, "del", &args[1]);
        }
        Some(Some(at)) => {
            if current != Some(at) {
                call.wrote(access.write(Op::SetExpiry {
                    key: args[1].clone(),
                    expire_at: Some(at),
                }));
            }
            call.notify(KeyspaceEvents::GENERIC, "expire", &args[1]);
        }
        Some(None) if current.is_some() => {
            call.wrote(access.write(Op::SetExpiry {
                key: args[1].clone(),
                expire_at: None,
            }));
            call.notify(KeyspaceEvents::GENERIC, "persist", &args[1]);
        }
        _ => {}
    }
    Frame::Bulk(value)
}

/// GETDEL key
pub fn getdel(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let value = match access.get() {
        None => return Frame::Null,
        Some(entry) if entry.kind() != Kind::String => return WRONG_TYPE,
        Some(entry) => text(entry),
    };
    call.wrote(access.write(Op::Delete {
        key: call.args[1].clone(),
    }));
    call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
    Frame::Bulk(value)
}

/// GETSET key value
pub fn getset(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let old = match access.get() {
        None => Frame::Null,
        Some(entry) if entry.kind() != Kind::String => return WRONG_TYPE,
        Some(entry) => Frame::Bulk(text(entry)),
    };
    call.wrote(access.write(Op::Put {
        key: call.args[1].clone(),
        value: Value::String(call.args[2].clone()),
        expire_at: None,
        keep_ttl: false,
    }));
    call.notify(KeyspaceEvents::STRING, "set", &call.args[1]);
    old
}

/// MGET key [key ...]
pub fn mget(call: &mut Call<'_>) -> Frame {
    let values = call.args[1..]
        .iter()
        .map(|key| {
            let mut access = call.state.engine.key(key);
            match access.get() {
                Some(entry) if entry.kind() == Kind::String => Frame::Bulk(text(entry)),
                _ => Frame::Null,
            }
        })
        .collect();
    Frame::Array(values)
}

/// MSET key value [key value ...]
pub fn mset(call: &mut Call<'_>) -> Frame {
    if call.args.len().is_multiple_of(2) {
        return super::wrong_arity("mset");
    }
    for pair in call.args[1..].chunks_exact(2) {
        let mut access = call.state.engine.key(&pair[0]);
        call.wrote(access.write(Op::Put {
            key: pair[0].clone(),
            value: Value::String(pair[1].clone()),
            expire_at: None,
            keep_ttl: false,
        }));
        call.notify(KeyspaceEvents::STRING, "set", &pair[0]);
    }
    Frame::ok()
}

/// MSETNX key value [key value ...]: sets them all only when none exists, with every key
/// locked at once, so the check and the writes are atomic.
pub fn msetnx(call: &mut Call<'_>) -> Frame {
    if call.args.len().is_multiple_of(2) {
        return super::wrong_arity("msetnx");
    }
    let keys: Vec<&[u8]> = call.args[1..]
        .chunks_exact(2)
        .map(|pair| &pair[0][..])
        .collect();
    let mut access = call.state.engine.keys(&keys);
    if keys.iter().any(|key| access.get(key).is_some()) {
        return Frame::Integer(0);
    }
    for pair in call.args[1..].chunks_exact(2) {
        call.wrote(access.write(Op::Put {
            key: pair[0].clone(),
            value: Value::String(pair[1].clone()),
            expire_at: None,
            keep_ttl: false,
        }));
        call.notify(KeyspaceEvents::STRING, "set", &pair[0]);
    }
    Frame::Integer(1)
}

/// APPEND key value
pub fn append(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let mut value = match access.get() {
        None => Vec::new(),
        Some(entry) if entry.kind() != Kind::String => return WRONG_TYPE,
        Some(entry) => text(entry).to_vec(),
    };
    if value.len() + call.args[2].len() > MAX_STRING {
        return Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    value.extend_from_slice(&call.args[2]);
    let len = value.len() as i64;
    call.wrote(access.write(Op::Put {
        key: call.args[1].clone(),
        value: Value::String(Bytes::from(value)),
        expire_at: None,
        keep_ttl: true,
    }));
    call.notify(KeyspaceEvents::STRING, "append", &call.args[1]);
    Frame::Integer(len)
}

/// STRLEN key
pub fn strlen(call: &mut Call<'_>) -> Frame {
    match string_value(call) {
        Ok(value) => Frame::Integer(value.map_or(0, |value| value.len() as i64)),
        Err(error) => error,
    }
}

/// GETRANGE key start end (also SUBSTR): Redis's clamping of negative and overlong indexes.
pub fn getrange(call: &mut Call<'_>) -> Frame {
    let (Some(mut start), Some(mut end)) = (parse_i64(&call.args[2]), parse_i64(&call.args[3]))
    else {
        return NOT_INTEGER;
    };
    let value = match string_value(call) {
        Ok(value) => value.unwrap_or_default(),
        Err(error) => return error,
    };
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Frame::Bulk(Bytes::new());
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Frame::Bulk(Bytes::new());
    }
    Frame::Bulk(value.slice(start as usize..=end as usize))
}

/// SETRANGE key offset value: overwrites from `offset`, zero-padding a shorter string; keeps
/// the TTL.
pub fn setrange(call: &mut Call<'_>) -> Frame {
    let Some(offset) = parse_i64(&call.args[2]) else {
        return NOT_INTEGER;
    };
    if offset < 0 {
        return Frame::error("ERR offset is out of range");
    }
    let offset = offset as usize;
    let patch = call.args[3].clone();
    let mut access = call.state.engine.key(&call.args[1]);
    let current = match access.get() {
        None => None,
        Some(entry) if entry.kind() != Kind::String => return WRONG_TYPE,
        Some(entry) => Some(text(entry)),
    };
    if patch.is_empty() {
        return Frame::Integer(current.map_or(0, |value| value.len() as i64));
    }
    if offset.saturating_add(patch.len()) > MAX_STRING {
        return Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    let mut value = current.map(|value| value.to_vec()).unwrap_or_default();
    if value.len() < offset + patch.len() {
        value.resize(offset + patch.len(), 0);
    }
    value[offset..offset + patch.len()].copy_from_slice(&patch);
    let len = value.len() as i64;
    call.wrote(access.write(Op::Put {
        key: call.args[1].clone(),
        value: Value::String(Bytes::from(value)),
        expire_at: None,
        keep_ttl: true,
    }));
    call.notify(KeyspaceEvents::STRING, "setrange", &call.args[1]);
    Frame::Integer(len)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn set_options_follow_redis() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET k v"), Frame::ok());
        assert_eq!(h.run("GET k"), bulk("v"));
        assert_eq!(h.run("SET k w NX"), Frame::Null);
        assert_eq!(h.run("SET k w XX GET"), bulk("v"));
        assert_eq!(h.run("SET n v XX"), Frame::Null);
        assert_eq!(
            h.run("SET k v EX 0"),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            h.run("SET k v EX -5"),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(
            h.run("SET k v EX x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("SET k v EX 10 PX 100"), err("ERR syntax error"));
        assert_eq!(h.run("SET k v NX XX"), err("ERR syntax error"));
        assert_eq!(h.run("SET k v EX"), err("ERR syntax error"));
        assert_eq!(h.run("SET k v EX 100"), Frame::ok());
        assert_eq!(h.run("TTL k"), Frame::Integer(100));
        assert_eq!(h.run("SET k v2 KEEPTTL"), Frame::ok());
        assert_eq!(h.run("TTL k"), Frame::Integer(100));
        assert_eq!(h.run("SET k v3"), Frame::ok());
        assert_eq!(h.run("TTL k"), Frame::Integer(-1));
        assert_eq!(h.run("HSET h f v"), Frame::Integer(1));
        assert_eq!(
            h.run("SET h v GET"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("GET h"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(h.run("SET h v"), Frame::ok());
        assert_eq!(h.run("GET h"), bulk("v"));
    }

    #[test]
    fn append_ranges_and_msetnx() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET s abc"), Frame::ok());
        assert_eq!(h.run("APPEND s def"), Frame::Integer(6));
        assert_eq!(h.run("GET s"), bulk("abcdef"));
        assert_eq!(h.run("STRLEN s"), Frame::Integer(6));
        assert_eq!(h.run("APPEND new x"), Frame::Integer(1));
        assert_eq!(h.run("GETRANGE s 1 -2"), bulk("bcde"));
        assert_eq!(h.run("GETRANGE s -100 100"), bulk("abcdef"));
        assert_eq!(h.run("GETRANGE s -1 -5"), bulk(""));
        assert_eq!(h.run("GETRANGE nope 0 -1"), bulk(""));
        assert_eq!(
            h.run("GETRANGE s a 1"),
            err("ERR value is not an integer or out of range")
        );
        h.run("EXPIRE s 100");
        assert_eq!(h.run("SETRANGE s 8 xy"), Frame::Integer(10));
        assert_eq!(h.run("GET s"), Frame::bulk(b"abcdef\0\0xy"));
        assert_eq!(h.run("TTL s"), Frame::Integer(100));
        assert_eq!(h.run("SETRANGE s -1 x"), err("ERR offset is out of range"));
        assert_eq!(h.run("SETRANGE empty 5 "), Frame::Integer(0));
        assert_eq!(h.run("EXISTS empty"), Frame::Integer(0));
        assert_eq!(h.run("MSETNX a 1 b 2"), Frame::Integer(1));
        assert_eq!(h.run("MSETNX b 3 c 4"), Frame::Integer(0));
        assert_eq!(
            h.run("MGET a b c"),
            Frame::Array(vec![bulk("1"), bulk("2"), Frame::Null])
        );
        assert_eq!(
            h.run("MSETNX a"),
            err("ERR wrong number of arguments for 'msetnx' command")
        );
    }

    #[test]
    fn setex_setnx_getex_getdel_mget() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("SETEX k 0 v"),
            err("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(h.run("SETEX k 50 v"), Frame::ok());
        assert_eq!(h.run("TTL k"), Frame::Integer(50));
        assert_eq!(h.run("SETNX k x"), Frame::Integer(0));
        assert_eq!(h.run("SETNX k2 x"), Frame::Integer(1));
        assert_eq!(h.run("GETEX k PERSIST"), bulk("v"));
        assert_eq!(h.run("TTL k"), Frame::Integer(-1));
        assert_eq!(h.run("GETEX k EX 20"), bulk("v"));
        assert_eq!(h.run("TTL k"), Frame::Integer(20));
        assert_eq!(
            h.run("GETEX k EX 0"),
            err("ERR invalid expire time in 'getex' command")
        );
        assert_eq!(h.run("GETEX k FOO"), err("ERR syntax error"));
        assert_eq!(
            h.run("MGET k nope k2"),
            Frame::Array(vec![bulk("v"), Frame::Null, bulk("x")])
        );
        assert_eq!(h.run("GETDEL k"), bulk("v"));
        assert_eq!(h.run("GETDEL k"), Frame::Null);
        assert_eq!(
            h.run("MSET a 1 b"),
            err("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(h.run("MSET a 1 b 2"), Frame::ok());
        assert_eq!(h.run("GETSET a 3"), bulk("1"));
    }
}
