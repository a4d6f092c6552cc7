//! Hash commands: HSET, HMSET, HSETNX, HGET, HMGET, HGETALL, HKEYS, HVALS, HDEL, HEXISTS, HLEN,
//! HSTRLEN, HSCAN, HRANDFIELD (HINCRBY and HINCRBYFLOAT are counters: `super::counters`).
//! Each field merges on its own across nodes (docs/replication.md).

use bytes::Bytes;

use super::cursor;
use super::flags::{DENY_OOM, WRITE};
use super::typed::{read, state_of};
use super::CommandSpec;
use super::{is, parse_i64, wrong_arity, Call, KeyspaceEvents, NOT_INTEGER, SYNTAX};
use crate::protocol::{Frame, Protocol};
use crate::store::state::view;
use crate::store::{Kind, Op};

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
    spec!("hstrlen", 3, 0, hstrlen),
    spec!("hscan", -3, 0, hscan),
    spec!("hrandfield", -2, 0, hrandfield),
];

/// The live fields of the key's hash (empty when absent), or `WRONGTYPE`.
fn fields(call: &Call<'_>) -> Result<Vec<(Bytes, Bytes)>, Frame> {
    Ok(read(&call.state.engine, &call.args[1], Kind::Hash)?
        .map(|state| view::hash_fields(&state))
        .unwrap_or_default())
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
    let state = state_of(&mut access, Kind::Hash)?;
    let mut new_fields: Vec<&Bytes> = fields
        .iter()
        .map(|(field, _)| field)
        .filter(|field| {
            state
                .as_ref()
                .is_none_or(|state| view::hash_field(state, field).is_none())
        })
        .collect();
    new_fields.sort();
    new_fields.dedup();
    let added = new_fields.len() as i64;
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
    match state_of(&mut access, Kind::Hash) {
        Err(error) => return error,
        Ok(Some(state)) if view::hash_field(&state, &call.args[2]).is_some() => {
            return Frame::Integer(0)
        }
        Ok(_) => {}
    }
    call.wrote(access.write(Op::HashSet {
        key: call.args[1].clone(),
        fields: vec![(call.args[2].clone(), call.args[3].clone())],
    }));
    call.notify(KeyspaceEvents::HASH, "hset", &call.args[1]);
    Frame::Integer(1)
}

/// One field of the key's hash.
fn field(call: &Call<'_>, name: &[u8]) -> Result<Option<Bytes>, Frame> {
    Ok(read(&call.state.engine, &call.args[1], Kind::Hash)?
        .and_then(|state| view::hash_field(&state, name)))
}

/// HGET key field
pub fn hget(call: &mut Call<'_>) -> Frame {
    match field(call, &call.args[2]) {
        Ok(Some(value)) => Frame::Bulk(value),
        Ok(None) => Frame::Null,
        Err(error) => error,
    }
}

/// HMGET key field [field ...]
pub fn hmget(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::Hash) {
        Err(error) => error,
        Ok(state) => Frame::Array(
            call.args[2..]
                .iter()
                .map(|name| {
                    state
                        .as_ref()
                        .and_then(|state| view::hash_field(state, name))
                        .map_or(Frame::Null, Frame::Bulk)
                })
                .collect(),
        ),
    }
}

/// HGETALL key: a map in RESP3, a flat array in RESP2.
pub fn hgetall(call: &mut Call<'_>) -> Frame {
    match fields(call) {
        Ok(pairs) => Frame::Map(
            pairs
                .into_iter()
                .map(|(field, value)| (Frame::Bulk(field), Frame::Bulk(value)))
                .collect(),
        ),
        Err(error) => error,
    }
}

/// HKEYS key
pub fn hkeys(call: &mut Call<'_>) -> Frame {
    match fields(call) {
        Ok(pairs) => Frame::Array(
            pairs
                .into_iter()
                .map(|(field, _)| Frame::Bulk(field))
                .collect(),
        ),
        Err(error) => error,
    }
}

/// HVALS key
pub fn hvals(call: &mut Call<'_>) -> Frame {
    match fields(call) {
        Ok(pairs) => Frame::Array(
            pairs
                .into_iter()
                .map(|(_, value)| Frame::Bulk(value))
                .collect(),
        ),
        Err(error) => error,
    }
}

/// HDEL key field [field ...]
pub fn hdel(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let state = match state_of(&mut access, Kind::Hash) {
        Err(error) => return error,
        Ok(None) => return Frame::Integer(0),
        Ok(Some(state)) => state,
    };
    let mut fields: Vec<Bytes> = call.args[2..]
        .iter()
        .filter(|field| view::hash_field(&state, field).is_some())
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    let removed = fields.len();
    if removed > 0 {
        let emptied = removed == view::hash_fields(&state).len();
        call.wrote(access.write(Op::HashDelete {
            key: call.args[1].clone(),
            fields,
        }));
        // Redis announces the emptied hash's removal after the fields'.
        call.notify(KeyspaceEvents::HASH, "hdel", &call.args[1]);
        if emptied {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
    }
    Frame::Integer(removed as i64)
}

/// HEXISTS key field
pub fn hexists(call: &mut Call<'_>) -> Frame {
    match field(call, &call.args[2]) {
        Ok(found) => Frame::Integer(i64::from(found.is_some())),
        Err(error) => error,
    }
}

/// HLEN key
pub fn hlen(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::Hash) {
        Ok(state) => Frame::Integer(state.map_or(0, |state| view::len(&state) as i64)),
        Err(error) => error,
    }
}

/// HSTRLEN key field
pub fn hstrlen(call: &mut Call<'_>) -> Frame {
    match field(call, &call.args[2]) {
        Ok(value) => Frame::Integer(value.map_or(0, |value| value.len() as i64)),
        Err(error) => error,
    }
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
pub fn hscan(call: &mut Call<'_>) -> Frame {
    let scan = match cursor::parse(&call.args[2..]) {
        Ok(scan) => scan,
        Err(error) => return error,
    };
    let pairs = match fields(call) {
        Ok(pairs) => pairs,
        Err(error) => return error,
    };
    let (next, page) = cursor::page(pairs, &scan);
    let items = page
        .into_iter()
        .flat_map(|(field, value)| [Frame::Bulk(field), Frame::Bulk(value)])
        .collect();
    cursor::reply(next, items)
}

/// HRANDFIELD key [count [WITHVALUES]]
pub fn hrandfield(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    if args.len() > 4 || (args.len() == 4 && !is(&args[3], "withvalues")) {
        return SYNTAX;
    }
    let count = match args.get(2) {
        None => None,
        Some(count) => match parse_i64(count) {
            Some(count) if count != i64::MIN => Some(count),
            Some(_) => return super::sets::OUT_OF_COUNT_RANGE,
            None => return NOT_INTEGER,
        },
    };
    let with_values = args.len() == 4;
    let pairs = match fields(call) {
        Ok(pairs) => pairs,
        Err(error) => return error,
    };
    let Some(count) = count else {
        if pairs.is_empty() {
            return Frame::Null;
        }
        let (field, _) = pairs[cursor::random_below(pairs.len())].clone();
        return Frame::Bulk(field);
    };
    let picked: Vec<(Bytes, Bytes)> = if pairs.is_empty() {
        Vec::new()
    } else if count >= 0 {
        cursor::distinct_indexes(pairs.len(), count as usize)
            .into_iter()
            .map(|index| pairs[index].clone())
            .collect()
    } else {
        (0..count.unsigned_abs().min(super::cursor::MAX_REPEATED_PICKS))
            .map(|_| pairs[cursor::random_below(pairs.len())].clone())
            .collect()
    };
    let resp3 = call.client.protocol == Protocol::Resp3;
    Frame::Array(
        picked
            .into_iter()
            .flat_map(|(field, value)| {
                if !with_values {
                    vec![Frame::Bulk(field)]
                } else if resp3 {
                    vec![Frame::Array(vec![Frame::Bulk(field), Frame::Bulk(value)])]
                } else {
                    vec![Frame::Bulk(field), Frame::Bulk(value)]
                }
            })
            .collect(),
    )
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
        assert_eq!(h.run("HSTRLEN h b"), Frame::Integer(1));
        assert_eq!(h.run("HSTRLEN h nope"), Frame::Integer(0));
        assert_eq!(h.run("HSETNX h b 9"), Frame::Integer(0));
        assert_eq!(h.run("HINCRBY h n 5"), Frame::Integer(5));
        assert_eq!(h.run("HINCRBY h a 1"), Frame::Integer(5));
        assert_eq!(
            h.run("HSCAN h 0 MATCH [ab]"),
            Frame::Array(vec![
                bulk("0"),
                Frame::Array(vec![bulk("a"), bulk("5"), bulk("b"), bulk("2")])
            ])
        );
        assert_eq!(h.run("HDEL h a b a zz"), Frame::Integer(2));
        assert_eq!(h.run("HDEL h c n"), Frame::Integer(2));
        assert_eq!(h.run("EXISTS h"), Frame::Integer(0));
        assert_eq!(h.run("HGETALL h"), Frame::Map(vec![]));
        assert_eq!(h.run("HMGET h a"), Frame::Array(vec![Frame::Null]));
        assert_eq!(h.run("HRANDFIELD h"), Frame::Null);
        assert_eq!(h.run("HRANDFIELD h 3"), Frame::Array(vec![]));
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
        assert_eq!(
            sorted(h.run("HRANDFIELD m 5")),
            Frame::Array(vec![bulk("a"), bulk("b")])
        );
        assert_eq!(array_len(h.run("HRANDFIELD m -3")), 3);
        assert_eq!(array_len(h.run("HRANDFIELD m 1 WITHVALUES")), 2);
        assert_eq!(h.run("HRANDFIELD m 1 FOO"), err("ERR syntax error"));
    }
}
