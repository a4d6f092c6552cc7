//! Sorted-set range commands: ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES) ZRANGESTORE
//! ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZCOUNT ZLEXCOUNT ZRANK
//! ZREVRANK ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX, parsed and answered the way
//! Redis's `zrangeGenericCommand` does (range errors before the key's type is checked).

use bytes::Bytes;

use super::flags::{DENY_OOM, WRITE};
use super::typed::state_of;
use super::zsets::{members, pair, parse_score};
use super::CommandSpec;
use super::{is, parse_i64, Call, NOT_INTEGER, SYNTAX};
use crate::config::KeyspaceEvents;
use crate::protocol::{Frame, Protocol};
use crate::store::state::view;
use crate::store::{Kind, Op, Value};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("zrange", -4, 0, zrange),
    spec!("zrangestore", -5, WRITE | DENY_OOM, zrangestore),
    spec!("zrangebyscore", -4, 0, zrangebyscore),
    spec!("zrevrange", -4, 0, zrevrange),
    spec!("zrevrangebyscore", -4, 0, zrevrangebyscore),
    spec!("zrangebylex", -4, 0, zrangebylex),
    spec!("zrevrangebylex", -4, 0, zrevrangebylex),
    spec!("zcount", 4, 0, zcount),
    spec!("zlexcount", 4, 0, zlexcount),
    spec!("zrank", -3, 0, zrank),
    spec!("zrevrank", -3, 0, zrevrank),
    spec!("zremrangebyscore", 4, WRITE, zremrangebyscore),
    spec!("zremrangebyrank", 4, WRITE, zremrangebyrank),
    spec!("zremrangebylex", 4, WRITE, zremrangebylex),
];

const NOT_FLOAT_RANGE: Frame = Frame::error("ERR min or max is not a float");
const NOT_LEX_RANGE: Frame = Frame::error("ERR min or max not valid string range item");

/// One end of a score range.
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

fn score_bound(arg: &[u8]) -> Result<ScoreBound, Frame> {
    let (exclusive, text) = match arg.first() {
        Some(b'(') => (true, &arg[1..]),
        _ => (false, arg),
    };
    parse_score(text)
        .map(|value| ScoreBound { value, exclusive })
        .ok_or(NOT_FLOAT_RANGE)
}

/// One end of a lexicographic range.
#[derive(Clone)]
enum LexBound {
    Min,
    Max,
    Inclusive(Bytes),
    Exclusive(Bytes),
}

fn lex_bound(arg: &Bytes) -> Result<LexBound, Frame> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if arg.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Inclusive(arg.slice(1..))),
        Some(b'(') => Ok(LexBound::Exclusive(arg.slice(1..))),
        _ => Err(NOT_LEX_RANGE),
    }
}

/// A range of a sorted set.
#[derive(Clone)]
enum Range {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

impl Range {
    fn contains(&self, member: &[u8], score: f64) -> bool {
        match self {
            Range::Rank(..) => true,
            Range::Score(min, max) => {
                (if min.exclusive {
                    score > min.value
                } else {
                    score >= min.value
                }) && (if max.exclusive {
                    score < max.value
                } else {
                    score <= max.value
                })
            }
            Range::Lex(min, max) => {
                let above = match min {
                    LexBound::Min => true,
                    LexBound::Max => false,
                    LexBound::Inclusive(bound) => member >= &bound[..],
                    LexBound::Exclusive(bound) => member > &bound[..],
                };
                let below = match max {
                    LexBound::Min => false,
                    LexBound::Max => true,
                    LexBound::Inclusive(bound) => member <= &bound[..],
                    LexBound::Exclusive(bound) => member < &bound[..],
                };
                above && below
            }
        }
    }
}

/// Redis's clamping of a rank range over `len` items: the indexes to take, if any.
fn ranks(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { start + len } else { start };
    let mut end = if end < 0 { end + len } else { end };
    start = start.max(0);
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    end = end.max(0);
    Some((start as usize, end as usize))
}

/// The members of `all` (ascending) in `range`, in the order asked, within `limit`.
fn select(
    all: Vec<(Bytes, f64)>,
    range: &Range,
    reverse: bool,
    limit: Option<(i64, i64)>,
) -> Vec<(Bytes, f64)> {
    let mut items = all;
    if reverse {
        items.reverse();
    }
    if let Range::Rank(start, end) = range {
        return match ranks(*start, *end, items.len()) {
            Some((start, end)) => items.drain(start..=end).collect(),
            None => Vec::new(),
        };
    }
    let matching = items
        .into_iter()
        .filter(|(member, score)| range.contains(member, *score));
    match limit {
        Some((offset, _)) if offset < 0 => Vec::new(),
        Some((offset, count)) if count >= 0 => matching
            .skip(offset as usize)
            .take(count as usize)
            .collect(),
        Some((offset, _)) => matching.skip(offset as usize).collect(),
        None => matching.collect(),
    }
}

/// The reply of a range: members, with their scores as RESP2 and RESP3 want them.
fn range_reply(items: Vec<(Bytes, f64)>, with_scores: bool, protocol: Protocol) -> Frame {
    Frame::Array(
        items
            .into_iter()
            .flat_map(|(member, score)| match (with_scores, protocol) {
                (false, _) => vec![Frame::Bulk(member)],
                (true, Protocol::Resp3) => vec![Frame::Array(pair(member, score).to_vec())],
                (true, Protocol::Resp2) => pair(member, score).to_vec(),
            })
            .collect(),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

/// A parsed range request.
struct Request {
    range: Range,
    reverse: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

/// Parses `min max [options]` (the range arguments start at `first`) as Redis does: options,
/// their conflicts, then the range itself.
fn parse_request(
    args: &[Bytes],
    first: usize,
    mut by: By,
    mut reverse: Option<bool>,
    store: bool,
) -> Result<Request, Frame> {
    let (mut limit, mut with_scores) = (None, false);
    let mut index = first + 2;
    while index < args.len() {
        let option = &args[index];
        let left = args.len() - index - 1;
        if is(option, "withscores") && !store {
            with_scores = true;
        } else if is(option, "limit") && left >= 2 {
            let offset = parse_i64(&args[index + 1]).ok_or(NOT_INTEGER)?;
            let count = parse_i64(&args[index + 2]).ok_or(NOT_INTEGER)?;
            limit = Some((offset, count));
            index += 2;
        } else if reverse.is_none() && is(option, "rev") {
            reverse = Some(true);
        } else if by == By::Auto && is(option, "bylex") {
            by = By::Lex;
        } else if by == By::Auto && is(option, "byscore") {
            by = By::Score;
        } else {
            return Err(SYNTAX);
        }
        index += 1;
    }
    let reverse = reverse.unwrap_or(false);
    if by == By::Auto {
        by = By::Rank;
    }
    if limit.is_some() && by == By::Rank {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && by == By::Lex {
        return Err(Frame::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (low, high) = if reverse && by != By::Rank {
        (&args[first + 1], &args[first])
    } else {
        (&args[first], &args[first + 1])
    };
    let range = match by {
        By::Rank | By::Auto => Range::Rank(
            parse_i64(low).ok_or(NOT_INTEGER)?,
            parse_i64(high).ok_or(NOT_INTEGER)?,
        ),
        By::Score => Range::Score(score_bound(low)?, score_bound(high)?),
        By::Lex => Range::Lex(lex_bound(low)?, lex_bound(high)?),
    };
    Ok(Request {
        range,
        reverse,
        limit,
        with_scores,
    })
}

fn answer(call: &mut Call<'_>, by: By, reverse: Option<bool>) -> Frame {
    let request = match parse_request(call.args, 2, by, reverse, false) {
        Ok(request) => request,
        Err(error) => return error,
    };
    match members(call, &call.args[1]) {
        Ok(all) => range_reply(
            select(all, &request.range, request.reverse, request.limit),
            request.with_scores,
            call.client.protocol,
        ),
        Err(error) => error,
    }
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
pub fn zrange(call: &mut Call<'_>) -> Frame {
    answer(call, By::Auto, None)
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
pub fn zrangebyscore(call: &mut Call<'_>) -> Frame {
    answer(call, By::Score, Some(false))
}

/// ZREVRANGE key start stop [WITHSCORES]
pub fn zrevrange(call: &mut Call<'_>) -> Frame {
    answer(call, By::Rank, Some(true))
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
pub fn zrevrangebyscore(call: &mut Call<'_>) -> Frame {
    answer(call, By::Score, Some(true))
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
pub fn zrangebylex(call: &mut Call<'_>) -> Frame {
    answer(call, By::Lex, Some(false))
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
pub fn zrevrangebylex(call: &mut Call<'_>) -> Frame {
    answer(call, By::Lex, Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
pub fn zrangestore(call: &mut Call<'_>) -> Frame {
    let request = match parse_request(&call.args[1..], 2, By::Auto, None, true) {
        Ok(request) => request,
        Err(error) => return error,
    };
    let (destination, source) = (call.args[1].clone(), call.args[2].clone());
    let mut access = call.state.engine.keys(&[&destination, &source]);
    let all = match access.get(&source) {
        None => Vec::new(),
        Some(entry) if entry.kind() != Kind::ZSet => return super::WRONG_TYPE,
        Some(entry) => entry
            .state()
            .map(|state| view::zset_members(&state))
            .unwrap_or_default(),
    };
    let picked = select(all, &request.range, request.reverse, request.limit);
    let count = picked.len() as i64;
    let exists = access.get(&destination).is_some();
    let receipt = if picked.is_empty() {
        if exists {
            let receipt = access.write(Op::Delete {
                key: destination.clone(),
            });
            call.notify(KeyspaceEvents::GENERIC, "del", &destination);
            receipt
        } else {
            crate::store::WriteReceipt::NONE
        }
    } else {
        let receipt = access.write(Op::Put {
            key: destination.clone(),
            value: Value::ZSet(picked),
            expire_at: None,
            keep_ttl: false,
        });
        call.notify(KeyspaceEvents::ZSET, "zrangestore", &destination);
        receipt
    };
    drop(access);
    call.wrote(receipt);
    Frame::Integer(count)
}

fn count_in(call: &mut Call<'_>, range: Result<Range, Frame>) -> Frame {
    let range = match range {
        Ok(range) => range,
        Err(error) => return error,
    };
    match members(call, &call.args[1]) {
        Ok(all) => Frame::Integer(select(all, &range, false, None).len() as i64),
        Err(error) => error,
    }
}

/// ZCOUNT key min max
pub fn zcount(call: &mut Call<'_>) -> Frame {
    let range = score_bound(&call.args[2])
        .and_then(|min| Ok(Range::Score(min, score_bound(&call.args[3])?)));
    count_in(call, range)
}

/// ZLEXCOUNT key min max
pub fn zlexcount(call: &mut Call<'_>) -> Frame {
    let range =
        lex_bound(&call.args[2]).and_then(|min| Ok(Range::Lex(min, lex_bound(&call.args[3])?)));
    count_in(call, range)
}

fn rank(call: &mut Call<'_>, reverse: bool) -> Frame {
    let with_score = match call.args.get(3) {
        None => false,
        Some(option) if is(option, "withscore") && call.args.len() == 4 => true,
        Some(_) => return SYNTAX,
    };
    let mut all = match members(call, &call.args[1]) {
        Ok(all) => all,
        Err(error) => return error,
    };
    if reverse {
        all.reverse();
    }
    match all.iter().position(|(member, _)| *member == call.args[2]) {
        Some(rank) if with_score => Frame::Array(vec![
            Frame::Integer(rank as i64),
            Frame::Double(all[rank].1),
        ]),
        Some(rank) => Frame::Integer(rank as i64),
        None if with_score => Frame::NullArray,
        None => Frame::Null,
    }
}

/// ZRANK key member [WITHSCORE]
pub fn zrank(call: &mut Call<'_>) -> Frame {
    rank(call, false)
}

/// ZREVRANK key member [WITHSCORE]
pub fn zrevrank(call: &mut Call<'_>) -> Frame {
    rank(call, true)
}

/// Removes the members of `range` and publishes Redis's events: `event`, then `del` when the
/// sorted set is gone.
fn remove_range(call: &mut Call<'_>, range: Result<Range, Frame>, event: &str) -> Frame {
    let range = match range {
        Ok(range) => range,
        Err(error) => return error,
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let all = match state_of(&mut access, Kind::ZSet) {
        Ok(state) => state
            .map(|state| view::zset_members(&state))
            .unwrap_or_default(),
        Err(error) => return error,
    };
    let size = all.len();
    let doomed: Vec<Bytes> = select(all, &range, false, None)
        .into_iter()
        .map(|(member, _)| member)
        .collect();
    let count = doomed.len() as i64;
    if !doomed.is_empty() {
        call.wrote(access.write(Op::ZRemove {
            key: call.args[1].clone(),
            members: doomed,
        }));
        call.notify(KeyspaceEvents::ZSET, event, &call.args[1]);
        if count as usize == size {
            call.notify(KeyspaceEvents::GENERIC, "del", &call.args[1]);
        }
    }
    Frame::Integer(count)
}

/// ZREMRANGEBYSCORE key min max
pub fn zremrangebyscore(call: &mut Call<'_>) -> Frame {
    let range = score_bound(&call.args[2])
        .and_then(|min| Ok(Range::Score(min, score_bound(&call.args[3])?)));
    remove_range(call, range, "zremrangebyscore")
}

/// ZREMRANGEBYRANK key start stop
pub fn zremrangebyrank(call: &mut Call<'_>) -> Frame {
    let range = match (parse_i64(&call.args[2]), parse_i64(&call.args[3])) {
        (Some(start), Some(end)) => Ok(Range::Rank(start, end)),
        _ => Err(NOT_INTEGER),
    };
    remove_range(call, range, "zremrangebyrank")
}

/// ZREMRANGEBYLEX key min max
pub fn zremrangebylex(call: &mut Call<'_>) -> Frame {
    let range =
        lex_bound(&call.args[2]).and_then(|min| Ok(Range::Lex(min, lex_bound(&call.args[3])?)));
    remove_range(call, range, "zremrangebylex")
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    fn bulks(items: &[&str]) -> Frame {
        Frame::Array(items.iter().map(|item| bulk(item)).collect())
    }

    #[test]
    fn ranges_follow_redis() {
        let mut h = Harness::new();
        assert_eq!(h.run("ZADD z 1 a 2 b 3 c 4 d 5 e"), Frame::Integer(5));
        assert_eq!(h.run("ZRANGE z 0 -1"), bulks(&["a", "b", "c", "d", "e"]));
        assert_eq!(h.run("ZRANGE z -2 100"), bulks(&["d", "e"]));
        assert_eq!(h.run("ZRANGE z 3 1"), bulks(&[]));
        assert_eq!(h.run("ZRANGE z 0 1 REV"), bulks(&["e", "d"]));
        assert_eq!(h.run("ZRANGE z (1 3 BYSCORE"), bulks(&["b", "c"]));
        assert_eq!(
            h.run("ZRANGE z 4 -inf BYSCORE REV LIMIT 1 2"),
            bulks(&["c", "b"])
        );
        assert_eq!(
            h.run("ZRANGE z 0 0 WITHSCORES"),
            Frame::Array(vec![bulk("a"), Frame::Double(1.0)])
        );
        assert_eq!(h.run("ZRANGE z 0 1 LIMIT 0 1"), err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
        assert_eq!(
            h.run("ZRANGE z - + BYLEX WITHSCORES"),
            err("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
        );
        assert_eq!(
            h.run("ZRANGE z x 1 BYSCORE"),
            err("ERR min or max is not a float")
        );
        assert_eq!(
            h.run("ZRANGE z a 1 BYLEX"),
            err("ERR min or max not valid string range item")
        );
        assert_eq!(
            h.run("ZRANGEBYSCORE z -inf +inf LIMIT 1 -1"),
            bulks(&["b", "c", "d", "e"])
        );
        assert_eq!(h.run("ZREVRANGEBYSCORE z 3 1"), bulks(&["c", "b", "a"]));
        assert_eq!(h.run("ZREVRANGE z 0 0"), bulks(&["e"]));
        assert_eq!(h.run("ZRANGEBYLEX z [b (d"), bulks(&["b", "c"]));
        assert_eq!(h.run("ZREVRANGEBYLEX z + [d"), bulks(&["e", "d"]));
        assert_eq!(h.run("ZCOUNT z (1 +inf"), Frame::Integer(4));
        assert_eq!(h.run("ZLEXCOUNT z - +"), Frame::Integer(5));
        assert_eq!(h.run("ZRANK z c"), Frame::Integer(2));
        assert_eq!(
            h.run("ZREVRANK z c WITHSCORE"),
            Frame::Array(vec![Frame::Integer(2), Frame::Double(3.0)])
        );
        assert_eq!(h.run("ZRANK z nope"), Frame::Null);
        assert_eq!(h.run("ZRANGESTORE dst z 1 2"), Frame::Integer(2));
        assert_eq!(h.run("ZRANGE dst 0 -1"), bulks(&["b", "c"]));
        assert_eq!(h.run("ZREMRANGEBYSCORE z -inf (2"), Frame::Integer(1));
        assert_eq!(h.run("ZREMRANGEBYRANK z -1 -1"), Frame::Integer(1));
        assert_eq!(h.run("ZREMRANGEBYLEX z [c [d"), Frame::Integer(2));
        assert_eq!(h.run("ZRANGE z 0 -1"), bulks(&["b"]));
        h.run("SET s x");
        assert_eq!(
            h.run("ZRANGE s 0 x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("ZRANGE s 0 1"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }
}
