//! Sorted-set commands that add, remove and read members one by one: ZADD (NX XX GT LT CH INCR)
//! ZINCRBY ZREM ZCARD ZSCORE ZMSCORE ZPOPMIN ZPOPMAX ZSCAN (the range commands are
//! `super::zranges`). Across nodes a member's score is last-writer-wins, and `ZINCRBY`s made on
//! different nodes all count (docs/replication.md).

use bytes::Bytes;

use super::cursor;
use super::flags::{DENY_OOM, WRITE};
use super::typed::{read, state_of};
use super::CommandSpec;
use super::{is, parse_i64, Call, KeyspaceEvents, SYNTAX};
use crate::protocol::{Frame, Protocol};
use crate::store::state::view;
use crate::store::{Kind, Op};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("zadd", -4, WRITE | DENY_OOM, zadd),
    spec!("zincrby", 4, WRITE | DENY_OOM, zincrby),
    spec!("zrem", -3, WRITE, zrem),
    spec!("zcard", 2, 0, zcard),
    spec!("zscore", 3, 0, zscore),
    spec!("zmscore", -3, 0, zmscore),
    spec!("zpopmin", -2, WRITE, zpopmin),
    spec!("zpopmax", -2, WRITE, zpopmax),
    spec!("zscan", -3, 0, zscan),
];

/// `ERR value is not a valid float`
pub const NOT_FLOAT: Frame = Frame::error("ERR value is not a valid float");
/// `ERR resulting score is not a number (NaN)`
pub const NAN_SCORE: Frame = Frame::error("ERR resulting score is not a number (NaN)");

/// Parses a score the way Redis's `string2d` does (`strtod` over the whole argument, no
/// leading space, `inf` accepted, NaN refused).
pub fn parse_score(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// The members and scores of the key's sorted set (empty when absent), in order.
pub fn members(call: &Call<'_>, key: &[u8]) -> Result<Vec<(Bytes, f64)>, Frame> {
    Ok(read(&call.state.engine, key, Kind::ZSet)?
        .map(|state| view::zset_members(&state))
        .unwrap_or_default())
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
pub fn zadd(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut index = 2;
    while let Some(option) = args.get(index) {
        let flag = if is(option, "nx") {
            &mut nx
        } else if is(option, "xx") {
            &mut xx
        } else if is(option, "gt") {
            &mut gt
        } else if is(option, "lt") {
            &mut lt
        } else if is(option, "ch") {
            &mut ch
        } else if is(option, "incr") {
            &mut incr
        } else {
            break;
        };
        *flag = true;
        index += 1;
    }
    let pairs = &args[index..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return SYNTAX;
    }
    if nx && xx {
        return Frame::error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Frame::error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs.len() > 2 {
        return Frame::error("ERR INCR option supports a single increment-element pair");
    }
    let mut scores: Vec<(Bytes, f64)> = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        match parse_score(&pair[0]) {
            Some(score) => scores.push((pair[1].clone(), score)),
            None => return NOT_FLOAT,
        }
    }
    let mut access = call.state.engine.key(&args[1]);
    let state = match state_of(&mut access, Kind::ZSet) {
        Ok(state) => state,
        Err(error) => return error,
    };
    if incr {
        let (member, by) = scores.swap_remove(0);
        let current = state
            .as_ref()
            .and_then(|state| view::zset_score(state, &member));
        let op = match current {
            Some(_) if nx => return Frame::Null,
            None if xx => return Frame::Null,
            Some(current) => {
                let result = current + by;
                if result.is_nan() {
                    return NAN_SCORE;
                }
                if (gt && result <= current) || (lt && result >= current) {
                    return Frame::Null;
                }
                if result == current {
                    return Frame::Double(result);
                }
                Op::ZIncrement {
                    key: args[1].clone(),
                    member,
                    by,
                    result,
                }
            }
            // Created by an increment: a counter from nothing, so increments of the same new
            // member on other nodes count too.
            None => Op::ZIncrement {
                key: args[1].clone(),
                member,
                by,
                result: by,
            },
        };
        let result = match &op {
            Op::ZIncrement { result, .. } => *result,
            _ => by,
        };
        call.wrote(access.write(op));
        call.notify(KeyspaceEvents::ZSET, "zincr", &args[1]);
        return Frame::Double(result);
    }
    let (mut added, mut changed) = (0, 0);
    let mut writes: Vec<(Bytes, f64)> = Vec::new();
    for (member, score) in scores {
        // A member named twice sees what the earlier pairs of this command left.
        let current = writes
            .iter()
            .rev()
            .find(|(name, _)| *name == member)
            .map(|(_, score)| *score)
            .or_else(|| {
                state
                    .as_ref()
                    .and_then(|state| view::zset_score(state, &member))
            });
        match current {
            Some(_) if nx => {}
            None if xx => {}
            Some(current) => {
                if (gt && score <= current) || (lt && score >= current) || score == current {
                    continue;
                }
                changed += 1;
                writes.push((member, score));
            }
            None => {
                added += 1;
                writes.push((member, score));
            }
        }
    }
    if !writes.is_empty() {
        call.wrote(access.write(Op::ZAdd {
            key: args[1].clone(),
            members: writes,
        }));
        call.notify(KeyspaceEvents::ZSET, "zadd", &args[1]);
    }
    Frame::Integer(if ch { added + changed } else { added })
}

/// ZINCRBY key increment member
pub fn zincrby(call: &mut Call<'_>) -> Frame {
    let Some(by) = parse_score(&call.args[2]) else {
        return NOT_FLOAT;
    };
    let member = call.args[3].clone();
    let mut access = call.state.engine.key(&call.args[1]);
    let current = match state_of(&mut access, Kind::ZSet) {
        Ok(state) => state.and_then(|state| view::zset_score(&state, &member)),
        Err(error) => return error,
    };
    let result = current.unwrap_or(0.0) + by;
    if result.is_nan() {
        return NAN_SCORE;
    }
    call.wrote(access.write(Op::ZIncrement {
        key: call.args[1].clone(),
        member,
        by,
        result,
    }));
    call.notify(KeyspaceEvents::ZSET, "zincr", &call.args[1]);
    Frame::Double(result)
}

/// ZREM key member [member ...]
pub fn zrem(call: &mut Call<'_>) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let state = match state_of(&mut access, Kind::ZSet) {
        Ok(Some(state)) => state,
        Ok(None) => return Frame::Integer(0),
        Err(error) => return error,
    };
    let mut removed: Vec<Bytes> = call.args[2..]
        .iter()
        .filter(|member| view::zset_score(&state, member).is_some())
        .cloned()
        .collect();
    removed.sort();
    removed.dedup();
    if !removed.is_empty() {
        let count = removed.len();
        let emptied = count == view::zset_members(&state).len();
        call.wrote(access.write(Op::ZRemove {
            key: call.args[1].clone(),
            members: removed,
        }));
        call.notify(KeyspaceEvents::ZSET, "zrem", &call.args[1]);
        if emptied {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
        return Frame::Integer(count as i64);
    }
    Frame::Integer(0)
}

/// ZCARD key
pub fn zcard(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::ZSet) {
        Ok(state) => Frame::Integer(state.map_or(0, |state| view::len(&state) as i64)),
        Err(error) => error,
    }
}

/// ZSCORE key member
pub fn zscore(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::ZSet) {
        Ok(state) => state
            .and_then(|state| view::zset_score(&state, &call.args[2]))
            .map_or(Frame::Null, Frame::Double),
        Err(error) => error,
    }
}

/// ZMSCORE key member [member ...]
pub fn zmscore(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::ZSet) {
        Ok(state) => Frame::Array(
            call.args[2..]
                .iter()
                .map(|member| {
                    state
                        .as_ref()
                        .and_then(|state| view::zset_score(state, member))
                        .map_or(Frame::Null, Frame::Double)
                })
                .collect(),
        ),
        Err(error) => error,
    }
}

/// A member and its score as a reply pair (`[member, score]`).
pub fn pair(member: Bytes, score: f64) -> [Frame; 2] {
    [Frame::Bulk(member), Frame::Double(score)]
}

fn pop(call: &mut Call<'_>, highest: bool) -> Frame {
    let count = match call.args.len() {
        2 => None,
        // Redis's `getPositiveLongFromObjectOrReply`: one message for both failures.
        3 => match parse_i64(&call.args[2]) {
            Some(count) if count >= 0 => Some(count as usize),
            _ => return Frame::error("ERR value is out of range, must be positive"),
        },
        _ => return SYNTAX,
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let mut members = match state_of(&mut access, Kind::ZSet) {
        Ok(state) => state
            .map(|state| view::zset_members(&state))
            .unwrap_or_default(),
        Err(error) => return error,
    };
    if highest {
        members.reverse();
    }
    let held = members.len();
    members.truncate(count.unwrap_or(1));
    if !members.is_empty() {
        call.wrote(access.write(Op::ZRemove {
            key: call.args[1].clone(),
            members: members.iter().map(|(member, _)| member.clone()).collect(),
        }));
        let event = if highest { "zpopmax" } else { "zpopmin" };
        call.notify(KeyspaceEvents::ZSET, event, &call.args[1]);
        if members.len() == held {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
    }
    let resp3 = call.client.protocol == Protocol::Resp3;
    match count {
        Some(_) if resp3 => Frame::Array(
            members
                .into_iter()
                .map(|(member, score)| Frame::Array(pair(member, score).to_vec()))
                .collect(),
        ),
        _ => Frame::Array(
            members
                .into_iter()
                .flat_map(|(member, score)| pair(member, score))
                .collect(),
        ),
    }
}

/// ZPOPMIN key [count]
pub fn zpopmin(call: &mut Call<'_>) -> Frame {
    pop(call, false)
}

/// ZPOPMAX key [count]
pub fn zpopmax(call: &mut Call<'_>) -> Frame {
    pop(call, true)
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]: scores as bulk strings, as Redis sends them.
pub fn zscan(call: &mut Call<'_>) -> Frame {
    let scan = match cursor::parse(&call.args[2..]) {
        Ok(scan) => scan,
        Err(error) => return error,
    };
    let members = match members(call, &call.args[1]) {
        Ok(members) => members,
        Err(error) => return error,
    };
    let (next, page) = cursor::page(members, &scan);
    cursor::reply(
        next,
        page.into_iter()
            .flat_map(|(member, score)| {
                [
                    Frame::Bulk(member),
                    Frame::Bulk(Bytes::from(crate::protocol::format_double(score))),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn zadd_options_follow_redis() {
        let mut h = Harness::new();
        assert_eq!(h.run("ZADD z 1 a 2 b"), Frame::Integer(2));
        assert_eq!(h.run("ZADD z NX 5 a 3 c"), Frame::Integer(1));
        assert_eq!(h.run("ZSCORE z a"), Frame::Double(1.0));
        assert_eq!(h.run("ZADD z XX CH 7 a 9 d"), Frame::Integer(1));
        assert_eq!(h.run("ZSCORE z d"), Frame::Null);
        assert_eq!(h.run("ZADD z GT CH 5 a 8 b"), Frame::Integer(1));
        assert_eq!(h.run("ZADD z LT 1 a"), Frame::Integer(0));
        assert_eq!(
            h.run("ZMSCORE z a b x"),
            Frame::Array(vec![Frame::Double(1.0), Frame::Double(8.0), Frame::Null])
        );
        assert_eq!(h.run("ZADD z INCR 2.5 a"), Frame::Double(3.5));
        assert_eq!(h.run("ZADD z NX INCR 1 a"), Frame::Null);
        assert_eq!(h.run("ZINCRBY z 1.5 a"), Frame::Double(5.0));
        assert_eq!(h.run("ZINCRBY z 2 new"), Frame::Double(2.0));
        assert_eq!(
            h.run("ZADD z NX XX 1 a"),
            err("ERR XX and NX options at the same time are not compatible")
        );
        assert_eq!(
            h.run("ZADD z GT LT 1 a"),
            err("ERR GT, LT, and/or NX options at the same time are not compatible")
        );
        assert_eq!(
            h.run("ZADD z INCR 1 a 2 b"),
            err("ERR INCR option supports a single increment-element pair")
        );
        assert_eq!(
            h.run("ZADD z 1"),
            err("ERR wrong number of arguments for 'zadd' command")
        );
        assert_eq!(h.run("ZADD z NX 1"), err("ERR syntax error"));
        assert_eq!(h.run("ZADD z x a"), err("ERR value is not a valid float"));
        assert_eq!(h.run("ZADD z inf i"), Frame::Integer(1));
        assert_eq!(
            h.run("ZINCRBY z -inf i"),
            err("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(h.run("ZCARD z"), Frame::Integer(5));
        assert_eq!(h.run("ZREM z i x i"), Frame::Integer(1));
        assert_eq!(
            h.run("ZPOPMIN z"),
            Frame::Array(vec![bulk("new"), Frame::Double(2.0)])
        );
        assert_eq!(
            h.run("ZPOPMAX z 2"),
            Frame::Array(vec![
                bulk("b"),
                Frame::Double(8.0),
                bulk("a"),
                Frame::Double(5.0)
            ])
        );
        assert_eq!(
            h.run("ZPOPMAX z -1"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(
            h.run("ZSCAN z 0"),
            Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("c"), bulk("3")])])
        );
    }
}
