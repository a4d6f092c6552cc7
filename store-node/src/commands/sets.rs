//! Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SSCAN SPOP SRANDMEMBER SMOVE
//! SINTER SINTERCARD SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE. Across nodes a set is an
//! add-wins observed-remove set: concurrent adds all survive, a removal removes only the adds
//! it saw (docs/replication.md).

use std::collections::BTreeSet;

use bytes::Bytes;

use super::cursor;
use super::flags::{DENY_OOM, WRITE};
use super::typed::{read, state_of};
use super::CommandSpec;
use super::{is, parse_i64, Call, KeyspaceEvents, NOT_INTEGER, SYNTAX, WRONG_TYPE};
use crate::protocol::Frame;
use crate::store::state::view;
use crate::store::{KeysAccess, Kind, Op, Value};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("sadd", -3, WRITE | DENY_OOM, sadd),
    spec!("srem", -3, WRITE, srem),
    spec!("smembers", 2, 0, smembers),
    spec!("sismember", 3, 0, sismember),
    spec!("smismember", -3, 0, smismember),
    spec!("scard", 2, 0, scard),
    spec!("sscan", -3, 0, sscan),
    spec!("spop", -2, WRITE, spop),
    spec!("srandmember", -2, 0, srandmember),
    spec!("smove", 4, WRITE, smove),
    spec!("sinter", -2, 0, sinter),
    spec!("sintercard", -3, 0, sintercard),
    spec!("sunion", -2, 0, sunion),
    spec!("sdiff", -2, 0, sdiff),
    spec!("sinterstore", -3, WRITE | DENY_OOM, sinterstore),
    spec!("sunionstore", -3, WRITE | DENY_OOM, sunionstore),
    spec!("sdiffstore", -3, WRITE | DENY_OOM, sdiffstore),
];

/// Redis's `getRangeLongFromObjectOrReply` for a count in `-LONG_MAX..=LONG_MAX` (its words).
pub const OUT_OF_COUNT_RANGE: Frame = Frame::error(
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
);

/// The members of the key's set (empty when absent), or `WRONGTYPE`.
fn members(call: &Call<'_>, key: &[u8]) -> Result<Vec<Bytes>, Frame> {
    Ok(read(&call.state.engine, key, Kind::Set)?
        .map(|state| view::set_members(&state))
        .unwrap_or_default())
}

fn bulk_set(members: impl IntoIterator<Item = Bytes>) -> Frame {
    Frame::Set(members.into_iter().map(Frame::Bulk).collect())
}

/// SADD key member [member ...]: the number of members added.
pub fn sadd(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let state = match state_of(&mut access, Kind::Set) {
        Ok(state) => state,
        Err(error) => return error,
    };
    let new: BTreeSet<&Bytes> = call.args[2..]
        .iter()
        .filter(|member| {
            state
                .as_ref()
                .is_none_or(|state| !view::set_contains(state, member))
        })
        .collect();
    // Every member is added again, present or not: a concurrent removal elsewhere (which did
    // not see this add) then leaves it in the set, as add-wins promises.
    call.wrote(access.write(Op::SetAdd {
        key: call.args[1].clone(),
        members: call.args[2..].to_vec(),
    }));
    if !new.is_empty() {
        call.notify(KeyspaceEvents::SET, "sadd", &call.args[1]);
    }
    Frame::Integer(new.len() as i64)
}

/// SREM key member [member ...]: the number of members removed.
pub fn srem(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let state = match state_of(&mut access, Kind::Set) {
        Ok(Some(state)) => state,
        Ok(None) => return Frame::Integer(0),
        Err(error) => return error,
    };
    let removed: BTreeSet<Bytes> = call.args[2..]
        .iter()
        .filter(|member| view::set_contains(&state, member))
        .cloned()
        .collect();
    if !removed.is_empty() {
        let emptied = removed.len() == view::set_members(&state).len();
        call.wrote(access.write(Op::SetRemove {
            key: call.args[1].clone(),
            members: removed.iter().cloned().collect(),
        }));
        call.notify(KeyspaceEvents::SET, "srem", &call.args[1]);
        if emptied {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
    }
    Frame::Integer(removed.len() as i64)
}

/// SMEMBERS key: a set in RESP3, an array in RESP2.
pub fn smembers(call: &mut Call<'_>) -> Frame {
    members(call, &call.args[1]).map_or_else(|error| error, bulk_set)
}

/// SISMEMBER key member
pub fn sismember(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::Set) {
        Ok(state) => Frame::Integer(i64::from(
            state.is_some_and(|state| view::set_contains(&state, &call.args[2])),
        )),
        Err(error) => error,
    }
}

/// SMISMEMBER key member [member ...]
pub fn smismember(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::Set) {
        Ok(state) => Frame::Array(
            call.args[2..]
                .iter()
                .map(|member| {
                    Frame::Integer(i64::from(
                        state
                            .as_ref()
                            .is_some_and(|state| view::set_contains(state, member)),
                    ))
                })
                .collect(),
        ),
        Err(error) => error,
    }
}

/// SCARD key
pub fn scard(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::Set) {
        Ok(state) => Frame::Integer(state.map_or(0, |state| view::len(&state) as i64)),
        Err(error) => error,
    }
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]
pub fn sscan(call: &mut Call<'_>) -> Frame {
    let scan = match cursor::parse(&call.args[2..]) {
        Ok(scan) => scan,
        Err(error) => return error,
    };
    let members = match members(call, &call.args[1]) {
        Ok(members) => members,
        Err(error) => return error,
    };
    let named = members.into_iter().map(|member| (member, ())).collect();
    let (next, page) = cursor::page(named, &scan);
    cursor::reply(
        next,
        page.into_iter()
            .map(|(member, _)| Frame::Bulk(member))
            .collect(),
    )
}

/// A count argument of SPOP: `None` when absent; errors as Redis words them.
fn pop_count(call: &Call<'_>) -> Result<Option<usize>, Frame> {
    match call.args.len() {
        2 => Ok(None),
        // Redis's `getPositiveLongFromObjectOrReply`: one message for both failures.
        3 => match parse_i64(&call.args[2]) {
            Some(count) if count >= 0 => Ok(Some(count as usize)),
            _ => Err(Frame::error("ERR value is out of range, must be positive")),
        },
        _ => Err(SYNTAX),
    }
}

/// SPOP key [count]
pub fn spop(call: &mut Call<'_>) -> Frame {
    let count = match pop_count(call) {
        Ok(count) => count,
        Err(error) => return error,
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let members = match state_of(&mut access, Kind::Set) {
        Ok(state) => state
            .map(|state| view::set_members(&state))
            .unwrap_or_default(),
        Err(error) => return error,
    };
    let picked: Vec<Bytes> = cursor::distinct_indexes(members.len(), count.unwrap_or(1))
        .into_iter()
        .map(|index| members[index].clone())
        .collect();
    if !picked.is_empty() {
        call.wrote(access.write(Op::SetRemove {
            key: call.args[1].clone(),
            members: picked.clone(),
        }));
        call.notify(KeyspaceEvents::SET, "spop", &call.args[1]);
        if picked.len() == members.len() {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
    }
    match count {
        None => picked.into_iter().next().map_or(Frame::Null, Frame::Bulk),
        Some(_) => bulk_set(picked),
    }
}

/// SRANDMEMBER key [count]: distinct members for a positive count, possibly repeated ones
/// for a negative count.
pub fn srandmember(call: &mut Call<'_>) -> Frame {
    let count = match call.args.len() {
        2 => None,
        3 => match parse_i64(&call.args[2]) {
            Some(count) if count != i64::MIN => Some(count),
            Some(_) => return OUT_OF_COUNT_RANGE,
            None => return NOT_INTEGER,
        },
        _ => return SYNTAX,
    };
    let members = match members(call, &call.args[1]) {
        Ok(members) => members,
        Err(error) => return error,
    };
    let Some(count) = count else {
        if members.is_empty() {
            return Frame::Null;
        }
        return Frame::Bulk(members[cursor::random_below(members.len())].clone());
    };
    if members.is_empty() {
        return Frame::Array(Vec::new());
    }
    let picked: Vec<Frame> = if count >= 0 {
        cursor::distinct_indexes(members.len(), count as usize)
            .into_iter()
            .map(|index| Frame::Bulk(members[index].clone()))
            .collect()
    } else {
        (0..count.unsigned_abs().min(super::cursor::MAX_REPEATED_PICKS))
            .map(|_| Frame::Bulk(members[cursor::random_below(members.len())].clone()))
            .collect()
    };
    Frame::Array(picked)
}

/// The members of `key` among locked keys, `WRONGTYPE` for another type.
fn locked_members(access: &mut KeysAccess<'_>, key: &[u8]) -> Result<Option<Vec<Bytes>>, Frame> {
    match access.get(key) {
        None => Ok(None),
        Some(entry) if entry.kind() != Kind::Set => Err(WRONG_TYPE),
        Some(entry) => Ok(Some(
            entry
                .state()
                .map(|state| view::set_members(&state))
                .unwrap_or_default(),
        )),
    }
}

/// SMOVE source destination member
pub fn smove(call: &mut Call<'_>) -> Frame {
    let (source, destination, member) = (&call.args[1], &call.args[2], &call.args[3]);
    let mut access = call.state.engine.keys(&[source, destination]);
    let from = match locked_members(&mut access, source) {
        Ok(Some(members)) => members,
        Ok(None) => return Frame::Integer(0),
        Err(error) => return error,
    };
    let to = match locked_members(&mut access, destination) {
        Ok(members) => members.unwrap_or_default(),
        Err(error) => return error,
    };
    let present = from.binary_search(member).is_ok();
    if source == destination || !present {
        return Frame::Integer(i64::from(present));
    }
    let mut receipt = access.write(Op::SetRemove {
        key: source.clone(),
        members: vec![member.clone()],
    });
    // Redis's order: the source's events, then the destination's (`new` comes from its write).
    call.state
        .notifier
        .notify(KeyspaceEvents::SET, "srem", source);
    if from.len() == 1 {
        call.state
            .notifier
            .notify(KeyspaceEvents::GENERIC, "del", source);
    }
    receipt.merge(access.write(Op::SetAdd {
        key: destination.clone(),
        members: vec![member.clone()],
    }));
    if !to.contains(member) {
        call.state
            .notifier
            .notify(KeyspaceEvents::SET, "sadd", destination);
    }
    drop(access);
    call.wrote(receipt);
    Frame::Integer(1)
}

/// How several sets combine.
#[derive(Clone, Copy, PartialEq)]
enum Combine {
    Inter,
    Union,
    Diff,
}

/// The combination of the sets at `keys` (missing keys are empty sets), read under one lock
/// of every key; `destination` is locked with them for a STORE.
fn combine(
    call: &mut Call<'_>,
    keys: &[Bytes],
    how: Combine,
    destination: Option<&Bytes>,
) -> Result<BTreeSet<Bytes>, Frame> {
    let mut all: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
    if let Some(destination) = destination {
        all.push(destination);
    }
    let mut access = call.state.engine.keys(&all);
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(locked_members(&mut access, key)?);
    }
    let mut result: BTreeSet<Bytes> = match sets.first() {
        Some(Some(first)) => first.iter().cloned().collect(),
        _ => BTreeSet::new(),
    };
    for set in sets.iter().skip(1) {
        let set: BTreeSet<&Bytes> = set.iter().flatten().collect();
        match how {
            Combine::Inter => result.retain(|member| set.contains(member)),
            Combine::Union => result.extend(set.into_iter().cloned()),
            Combine::Diff => result.retain(|member| !set.contains(member)),
        }
    }
    if how == Combine::Inter && sets.iter().any(Option::is_none) {
        result.clear();
    }
    if let Some(destination) = destination {
        let exists = access.get(destination).is_some();
        let receipt = if result.is_empty() {
            if exists {
                let receipt = access.write(Op::Delete {
                    key: destination.clone(),
                });
                call.state
                    .notifier
                    .notify(KeyspaceEvents::GENERIC, "del", destination);
                receipt
            } else {
                crate::store::WriteReceipt::NONE
            }
        } else {
            let receipt = access.write(Op::Put {
                key: destination.clone(),
                value: Value::Set(result.iter().cloned().collect()),
                expire_at: None,
                keep_ttl: false,
            });
            let event = match how {
                Combine::Inter => "sinterstore",
                Combine::Union => "sunionstore",
                Combine::Diff => "sdiffstore",
            };
            call.state
                .notifier
                .notify(KeyspaceEvents::SET, event, destination);
            receipt
        };
        drop(access);
        call.wrote(receipt);
    }
    Ok(result)
}

fn combine_reply(call: &mut Call<'_>, how: Combine) -> Frame {
    let keys = call.args[1..].to_vec();
    combine(call, &keys, how, None).map_or_else(|error| error, bulk_set)
}

fn combine_store(call: &mut Call<'_>, how: Combine) -> Frame {
    let destination = call.args[1].clone();
    let keys = call.args[2..].to_vec();
    combine(call, &keys, how, Some(&destination))
        .map_or_else(|error| error, |result| Frame::Integer(result.len() as i64))
}

/// SINTER key [key ...]
pub fn sinter(call: &mut Call<'_>) -> Frame {
    combine_reply(call, Combine::Inter)
}

/// SUNION key [key ...]
pub fn sunion(call: &mut Call<'_>) -> Frame {
    combine_reply(call, Combine::Union)
}

/// SDIFF key [key ...]
pub fn sdiff(call: &mut Call<'_>) -> Frame {
    combine_reply(call, Combine::Diff)
}

/// SINTERSTORE destination key [key ...]
pub fn sinterstore(call: &mut Call<'_>) -> Frame {
    combine_store(call, Combine::Inter)
}

/// SUNIONSTORE destination key [key ...]
pub fn sunionstore(call: &mut Call<'_>) -> Frame {
    combine_store(call, Combine::Union)
}

/// SDIFFSTORE destination key [key ...]
pub fn sdiffstore(call: &mut Call<'_>) -> Frame {
    combine_store(call, Combine::Diff)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn sintercard(call: &mut Call<'_>) -> Frame {
    let numkeys = match parse_i64(&call.args[1]) {
        Some(count) if count > 0 => count as usize,
        Some(_) => return Frame::error("ERR numkeys should be greater than 0"),
        None => return Frame::error("ERR numkeys should be greater than 0"),
    };
    let Some(keys) = call.args.get(2..2 + numkeys) else {
        return Frame::error("ERR Number of keys can't be greater than number of args");
    };
    let keys = keys.to_vec();
    let rest = &call.args[2 + numkeys..];
    let mut limit = 0usize;
    match rest {
        [] => {}
        [option, value] if is(option, "limit") => match parse_i64(value) {
            Some(value) if value >= 0 => limit = value as usize,
            _ => return Frame::error("ERR LIMIT can't be negative"),
        },
        _ => return SYNTAX,
    }
    match combine(call, &keys, Combine::Inter, None) {
        Ok(result) if limit > 0 => Frame::Integer(result.len().min(limit) as i64),
        Ok(result) => Frame::Integer(result.len() as i64),
        Err(error) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    fn set(members: &[&str]) -> Frame {
        Frame::Set(members.iter().map(|member| bulk(member)).collect())
    }

    #[test]
    fn set_commands() {
        let mut h = Harness::new();
        assert_eq!(h.run("SADD s a b c a"), Frame::Integer(3));
        assert_eq!(h.run("SADD s c d"), Frame::Integer(1));
        assert_eq!(h.run("SCARD s"), Frame::Integer(4));
        assert_eq!(h.run("SMEMBERS s"), set(&["a", "b", "c", "d"]));
        assert_eq!(h.run("SISMEMBER s b"), Frame::Integer(1));
        assert_eq!(
            h.run("SMISMEMBER s a x"),
            Frame::Array(vec![Frame::Integer(1), Frame::Integer(0)])
        );
        assert_eq!(h.run("SREM s a x a"), Frame::Integer(1));
        assert_eq!(h.run("SADD t c d e"), Frame::Integer(3));
        assert_eq!(h.run("SINTER s t"), set(&["c", "d"]));
        assert_eq!(h.run("SINTER s t nope"), set(&[]));
        assert_eq!(h.run("SUNION s t nope"), set(&["b", "c", "d", "e"]));
        assert_eq!(h.run("SDIFF s t"), set(&["b"]));
        assert_eq!(h.run("SINTERCARD 2 s t LIMIT 1"), Frame::Integer(1));
        assert_eq!(h.run("SINTERSTORE u s t"), Frame::Integer(2));
        assert_eq!(h.run("SMEMBERS u"), set(&["c", "d"]));
        assert_eq!(h.run("SDIFFSTORE u s s"), Frame::Integer(0));
        assert_eq!(h.run("EXISTS u"), Frame::Integer(0));
        assert_eq!(h.run("SMOVE s t b"), Frame::Integer(1));
        assert_eq!(h.run("SMOVE s t b"), Frame::Integer(0));
        assert_eq!(h.run("SMEMBERS s"), set(&["c", "d"]));
        assert_eq!(h.run("SPOP s 0"), set(&[]));
        assert_eq!(array_len(h.run("SPOP s 5")), 2);
        assert_eq!(h.run("EXISTS s"), Frame::Integer(0));
        assert_eq!(h.run("SPOP s"), Frame::Null);
        assert_eq!(
            h.run("SPOP t -1"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(array_len(h.run("SRANDMEMBER t -10")), 10);
        assert_eq!(array_len(h.run("SRANDMEMBER t 10")), 4);
        h.run("SET str x");
        assert_eq!(
            h.run("SADD str a"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("SINTER t str"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(
            h.run("SMOVE t str c"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(h.run("SUNIONSTORE str t"), Frame::Integer(4));
        assert_eq!(h.run("TYPE str"), Frame::Simple("set".into()));
        assert_eq!(
            h.run("SSCAN t 0 MATCH [bc]"),
            Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("b"), bulk("c")])])
        );
    }
}
