//! Hash commands: HSET, HMSET, HSETNX, HGET, HMGET, HGETALL, HKEYS, HVALS, HDEL, HEXISTS, HLEN,
//! HINCRBY.

use bytes::Bytes;

use super::flags::{DENY_OOM, WRITE};
use super::CommandSpec;
use super::{parse_i64, wrong_arity, Call, KeyspaceEvents, NOT_INTEGER, WRONG_TYPE};
use crate::protocol::Frame;
use crate::store::{Entry, Kind, Op};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("hset", -4, WRITE | DENY_OOM, hset),
    spec!("hmset", -4, WRITE | DENY_OOM, hmset),
    spec!("hsetnx", 4, WRITE | DENY_OOM, hsetnx),
    spec!("hget", 3, 0, hget),
    spec!("hmget", -3, 0, hmget),
    spec!("hgetall", 2, 0, hgetall),
    spec!("hkeys", 2, 0, hkeys),
    spec!("hvals", 2, 0, hvals),
    spec!("hdel", -3, WRITE, hdel),
    spec!("hexists", 3, 0, hexists),
    spec!("hlen", 2, 0, hlen),
    spec!("hincrby", 4, WRITE | DENY_OOM, hincrby),
];

/// Reads the key as a hash: Err(WRONGTYPE) for a string, Ok(None) when missing.
fn with_hash<T>(call: &mut Call<'_>, read: impl FnOnce(&Entry) -> T) -> Result<Option<T>, Frame> {
    let mut access = call.state.engine.key(&call.args[1]);
    match access.get() {
        None => Ok(None),
        Some(entry) if entry.kind() != Kind::Hash => Err(WRONG_TYPE),
        Some(entry) => Ok(Some(read(entry))),
    }
}

fn set_fields(call: &mut Call<'_>, name: &str) -> Result<i64, Frame> {
    if !call.args.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    let fields: Vec<(Bytes, Bytes)> = call.args[2..]
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    let mut access = call.state.engine.key(&call.args[1]);
    let added = match access.get() {
        None => {
            let mut distinct: Vec<&Bytes> = fields.iter().map(|(field, _)| field).collect();
            distinct.sort();
            distinct.dedup();
            distinct.len() as i64
        }
        Some(entry) if entry.kind() != Kind::Hash => return Err(WRONG_TYPE),
        Some(entry) => {
            let mut new_fields: Vec<&Bytes> = fields
                .iter()
                .map(|(field, _)| field)
                .filter(|field| entry.hash_get(field).is_none())
                .collect();
            new_fields.sort();
            new_fields.dedup();
            new_fields.len() as i64
        }
    };
    call.wrote(access.write(Op::HashSet {
        key: call.args[1].clone(),
        fields,
    }));
    call.notify(KeyspaceEvents::HASH, "hset", &call.args[1]);
    Ok(added)
}

/// HSET key field value [field value ...]: the number of new fields.
pub fn hset(call: &mut Call<'_>) -> Frame {
    set_fields(call, "hset").map_or_else(|error| error, Frame::Integer)
}

/// HMSET key field value [field value ...]
pub fn hmset(call: &mut Call<'_>) -> Frame {
    set_fields(call, "hmset").map_or_else(|error| error, |_| Frame::ok())
}

/// HSETNX key field value
pub fn hsetnx(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    match access.get() {
        Some(entry) if entry.kind() != Kind::Hash => return WRONG_TYPE,
        Some(entry) if entry.hash_get(&call.args[2]).is_some() => return Frame::Integer(0),
        _ => {}
    }
    call.wrote(access.write(Op::HashSet {
        key: call.args[1].clone(),
        fields: vec![(call.args[2].clone(), call.args[3].clone())],
    }));
    call.notify(KeyspaceEvents::HASH, "hset", &call.args[1]);
    Frame::Integer(1)
}

/// HGET key field
pub fn hget(call: &mut Call<'_>) -> Frame {
    let field = call.args[2].clone();
    match with_hash(call, |entry| entry.hash_get(&field).map(Frame::bulk)) {
        Ok(Some(Some(value))) => value,
        Ok(_) => Frame::Null,
        Err(error) => error,
    }
}

/// HMGET key field [field ...]
pub fn hmget(call: &mut Call<'_>) -> Frame {
    let fields = &call.args[2..];
    let count = fields.len();
    let fields = fields.to_vec();
    match with_hash(call, |entry| {
        fields
            .iter()
            .map(|field| entry.hash_get(field).map_or(Frame::Null, Frame::bulk))
            .collect::<Vec<_>>()
    }) {
        Ok(Some(values)) => Frame::Array(values),
        Ok(None) => Frame::Array(vec![Frame::Null; count]),
        Err(error) => error,
    }
}

/// HGETALL key: a map in RESP3, a flat array in RESP2.
pub fn hgetall(call: &mut Call<'_>) -> Frame {
    match with_hash(call, |entry| {
        entry
            .hash_fields()
            .map(|(field, value)| (Frame::bulk(field), Frame::bulk(value)))
            .collect::<Vec<_>>()
    }) {
        Ok(pairs) => Frame::Map(pairs.unwrap_or_default()),
        Err(error) => error,
    }
}

/// HKEYS key
pub fn hkeys(call: &mut Call<'_>) -> Frame {
    match with_hash(call, |entry| {
        entry
            .hash_fields()
            .map(|(field, _)| Frame::bulk(field))
            .collect()
    }) {
        Ok(fields) => Frame::Array(fields.unwrap_or_default()),
        Err(error) => error,
    }
}

/// HVALS key
pub fn hvals(call: &mut Call<'_>) -> Frame {
    match with_hash(call, |entry| {
        entry
            .hash_fields()
            .map(|(_, value)| Frame::bulk(value))
            .collect()
    }) {
        Ok(values) => Frame::Array(values.unwrap_or_default()),
        Err(error) => error,
    }
}

/// HDEL key field [field ...]
pub fn hdel(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let (mut fields, held): (Vec<Bytes>, usize) = match access.get() {
        None => return Frame::Integer(0),
        Some(entry) if entry.kind() != Kind::Hash => return WRONG_TYPE,
        Some(entry) => (
            call.args[2..]
                .iter()
                .filter(|field| entry.hash_get(field).is_some())
                .cloned()
                .collect(),
            entry.hash_fields().count(),
        ),
    };
    fields.sort();
    fields.dedup();
    let removed = fields.len();
    if removed > 0 {
        call.wrote(access.write(Op::HashDelete {
            key: call.args[1].clone(),
            fields,
        }));
        // Redis announces the emptied hash's removal after the fields'.
        call.notify(KeyspaceEvents::HASH, "hdel", &call.args[1]);
        if removed == held {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
    }
    Frame::Integer(removed as i64)
}

/// HEXISTS key field
pub fn hexists(call: &mut Call<'_>) -> Frame {
    let field = call.args[2].clone();
    match with_hash(call, |entry| entry.hash_get(&field).is_some()) {
        Ok(found) => Frame::Integer(i64::from(found.unwrap_or(false))),
        Err(error) => error,
    }
}

/// HLEN key
pub fn hlen(call: &mut Call<'_>) -> Frame {
    match with_hash(call, |entry| entry.hash_fields().count() as i64) {
        Ok(len) => Frame::Integer(len.unwrap_or(0)),
        Err(error) => error,
    }
}

/// HINCRBY key field increment
pub fn hincrby(call: &mut Call<'_>) -> Frame {
    let Some(by) = parse_i64(&call.args[3]) else {
        return NOT_INTEGER;
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let current = match access.get() {
        None => 0,
        Some(entry) if entry.kind() != Kind::Hash => return WRONG_TYPE,
        Some(entry) => match entry.hash_get(&call.args[2]) {
            None => 0,
            Some(value) => match parse_i64(value) {
                Some(value) => value,
                None => return Frame::error("ERR hash value is not an integer"),
            },
        },
    };
    let Some(next) = current.checked_add(by) else {
        return Frame::error("ERR increment or decrement would overflow");
    };
    call.wrote(access.write(Op::HashSet {
        key: call.args[1].clone(),
        fields: vec![(call.args[2].clone(), Bytes::from(next.to_string()))],
    }));
    call.notify(KeyspaceEvents::HASH, "hincrby", &call.args[1]);
    Frame::Integer(next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn hash_commands() {
        let mut h = Harness::new();
        assert_eq!(h.run("HSET h a 1 b 2 a 3"), Frame::Integer(2));
        assert_eq!(h.run("HGET h a"), bulk("3"));
        assert_eq!(h.run("HSET h a 4 c 5"), Frame::Integer(1));
        assert_eq!(
            h.run("HSET h a"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(h.run("HLEN h"), Frame::Integer(3));
        assert_eq!(
            h.run("HMGET h a x c"),
            Frame::Array(vec![bulk("4"), Frame::Null, bulk("5")])
        );
        assert_eq!(
            h.run("HGETALL h"),
            Frame::Map(vec![
                (bulk("a"), bulk("4")),
                (bulk("b"), bulk("2")),
                (bulk("c"), bulk("5"))
            ])
        );
        assert_eq!(h.run("HEXISTS h b"), Frame::Integer(1));
        assert_eq!(h.run("HSETNX h b 9"), Frame::Integer(0));
        assert_eq!(h.run("HINCRBY h n 5"), Frame::Integer(5));
        assert_eq!(h.run("HINCRBY h a 1"), Frame::Integer(5));
        assert_eq!(h.run("HDEL h a b a zz"), Frame::Integer(2));
        assert_eq!(h.run("HDEL h c n"), Frame::Integer(2));
        assert_eq!(h.run("EXISTS h"), Frame::Integer(0));
        assert_eq!(h.run("HGETALL h"), Frame::Map(vec![]));
        assert_eq!(h.run("HMGET h a"), Frame::Array(vec![Frame::Null]));
        h.run("SET s v");
        assert_eq!(
            h.run("HGET s a"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("HSET s a 1"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(h.run("HMSET m a 1"), Frame::ok());
        h.run("EXPIRE m 100");
        h.run("HSET m b 2");
        assert_eq!(h.run("TTL m"), Frame::Integer(100));
    }
}
