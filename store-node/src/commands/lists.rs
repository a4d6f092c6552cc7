//! List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LRANGE LLEN LINDEX LSET LREM LTRIM LPOS
//! LINSERT LMOVE RPOPLPUSH (no blocking variants). Across nodes every element keeps its own
//! identity and place, so elements pushed concurrently on different nodes all survive in one
//! order everywhere; a pop removes the element it saw, so two nodes popping at once may return
//! the same element (docs/replication.md).

use bytes::Bytes;

use super::flags::{DENY_OOM, WRITE};
use super::typed::{read, state_of};
use super::CommandSpec;
use super::{is, parse_i64, wrong_arity, Call, NOT_INTEGER, SYNTAX, WRONG_TYPE};
use crate::config::KeyspaceEvents;
use crate::protocol::Frame;
use crate::store::op::End;
use crate::store::state::view;
use crate::store::{Kind, Op};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("lpush", -3, WRITE | DENY_OOM, lpush),
    spec!("rpush", -3, WRITE | DENY_OOM, rpush),
    spec!("lpushx", -3, WRITE | DENY_OOM, lpushx),
    spec!("rpushx", -3, WRITE | DENY_OOM, rpushx),
    spec!("lpop", -2, WRITE, lpop),
    spec!("rpop", -2, WRITE, rpop),
    spec!("lrange", 4, 0, lrange),
    spec!("llen", 2, 0, llen),
    spec!("lindex", 3, 0, lindex),
    spec!("lset", 4, WRITE | DENY_OOM, lset),
    spec!("lrem", 4, WRITE, lrem),
    spec!("ltrim", 4, WRITE, ltrim),
    spec!("lpos", -3, 0, lpos),
    spec!("linsert", 5, WRITE | DENY_OOM, linsert),
    spec!("lmove", 5, WRITE | DENY_OOM, lmove),
    spec!("rpoplpush", 3, WRITE | DENY_OOM, rpoplpush),
];

/// The values of the key's list (empty when absent), or `WRONGTYPE`.
fn values(call: &Call<'_>) -> Result<Vec<Bytes>, Frame> {
    Ok(read(&call.state.engine, &call.args[1], Kind::List)?
        .map(|state| view::list_values(&state))
        .unwrap_or_default())
}

fn push(call: &mut Call<'_>, end: End, only_if_exists: bool) -> Frame {
    let mut access = call.state.engine.key(&call.args[1]);
    let len = match state_of(&mut access, Kind::List) {
        Ok(Some(state)) => view::len(&state),
        Ok(None) if only_if_exists => return Frame::Integer(0),
        Ok(None) => 0,
        Err(error) => return error,
    };
    call.wrote(access.write(Op::ListPush {
        key: call.args[1].clone(),
        end,
        values: call.args[2..].to_vec(),
    }));
    call.notify(KeyspaceEvents::LIST, push_event(end), &call.args[1]);
    Frame::Integer((len + call.args.len() - 2) as i64)
}

/// The keyspace event of a push at `end`.
fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

/// The keyspace event of a pop at `end`.
fn pop_event(end: End) -> &'static str {
    match end {
        End::Left => "lpop",
        End::Right => "rpop",
    }
}

/// Publishes Redis's events of elements removed from the list at `key` by `event`: the event,
/// then `del` when the list is gone.
fn removed(call: &Call<'_>, event: &str, key: &[u8], emptied: bool) {
    call.notify(KeyspaceEvents::LIST, event, key);
    if emptied {
        call.notify(KeyspaceEvents::GENERIC, "del", key);
    }
}

/// LPUSH key element [element ...]
pub fn lpush(call: &mut Call<'_>) -> Frame {
    push(call, End::Left, false)
}

/// RPUSH key element [element ...]
pub fn rpush(call: &mut Call<'_>) -> Frame {
    push(call, End::Right, false)
}

/// LPUSHX key element [element ...]
pub fn lpushx(call: &mut Call<'_>) -> Frame {
    push(call, End::Left, true)
}

/// RPUSHX key element [element ...]
pub fn rpushx(call: &mut Call<'_>) -> Frame {
    push(call, End::Right, true)
}

fn pop(call: &mut Call<'_>, end: End, name: &str) -> Frame {
    let count = match call.args.len() {
        2 => None,
        3 => match parse_i64(&call.args[2]) {
            Some(count) if count >= 0 => Some(count as usize),
            _ => return Frame::error("ERR value is out of range, must be positive"),
        },
        _ => return wrong_arity(name),
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let values = match state_of(&mut access, Kind::List) {
        Ok(Some(state)) => view::list_values(&state),
        Ok(None) if count.is_some() => return Frame::NullArray,
        Ok(None) => return Frame::Null,
        Err(error) => return error,
    };
    let take = count.unwrap_or(1).min(values.len());
    if take == 0 {
        return Frame::Array(Vec::new());
    }
    let indexes: Vec<usize> = match end {
        End::Left => (0..take).collect(),
        End::Right => (values.len() - take..values.len()).rev().collect(),
    };
    let popped: Vec<Bytes> = indexes.iter().map(|index| values[*index].clone()).collect();
    call.wrote(access.write(Op::ListRemove {
        key: call.args[1].clone(),
        indexes,
    }));
    removed(call, pop_event(end), &call.args[1], take == values.len());
    match count {
        None => popped.into_iter().next().map_or(Frame::Null, Frame::Bulk),
        Some(_) => Frame::Array(popped.into_iter().map(Frame::Bulk).collect()),
    }
}

/// LPOP key [count]
pub fn lpop(call: &mut Call<'_>) -> Frame {
    pop(call, End::Left, "lpop")
}

/// RPOP key [count]
pub fn rpop(call: &mut Call<'_>) -> Frame {
    pop(call, End::Right, "rpop")
}

/// Redis's clamping of `start..=end` over `len` items.
fn span(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (start + len).max(0)
    } else {
        start
    };
    let mut end = if end < 0 { end + len } else { end };
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

/// LRANGE key start stop
pub fn lrange(call: &mut Call<'_>) -> Frame {
    let (Some(start), Some(end)) = (parse_i64(&call.args[2]), parse_i64(&call.args[3])) else {
        return NOT_INTEGER;
    };
    match values(call) {
        Ok(values) => Frame::Array(match span(start, end, values.len()) {
            Some((start, end)) => values[start..=end]
                .iter()
                .cloned()
                .map(Frame::Bulk)
                .collect(),
            None => Vec::new(),
        }),
        Err(error) => error,
    }
}

/// LLEN key
pub fn llen(call: &mut Call<'_>) -> Frame {
    match read(&call.state.engine, &call.args[1], Kind::List) {
        Ok(state) => Frame::Integer(state.map_or(0, |state| view::len(&state) as i64)),
        Err(error) => error,
    }
}

/// A list index (negative from the tail) as a position, if in range.
fn position(index: i64, len: usize) -> Option<usize> {
    let index = if index < 0 { index + len as i64 } else { index };
    (0..len as i64).contains(&index).then_some(index as usize)
}

/// LINDEX key index
pub fn lindex(call: &mut Call<'_>) -> Frame {
    let Some(index) = parse_i64(&call.args[2]) else {
        return NOT_INTEGER;
    };
    match values(call) {
        Ok(values) => {
            position(index, values.len()).map_or(Frame::Null, |at| Frame::Bulk(values[at].clone()))
        }
        Err(error) => error,
    }
}

/// LSET key index element
pub fn lset(call: &mut Call<'_>) -> Frame {
    let Some(index) = parse_i64(&call.args[2]) else {
        return NOT_INTEGER;
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let len = match state_of(&mut access, Kind::List) {
        Ok(Some(state)) => view::len(&state),
        Ok(None) => return Frame::error("ERR no such key"),
        Err(error) => return error,
    };
    let Some(at) = position(index, len) else {
        return Frame::error("ERR index out of range");
    };
    call.wrote(access.write(Op::ListSet {
        key: call.args[1].clone(),
        index: at,
        value: call.args[3].clone(),
    }));
    call.notify(KeyspaceEvents::LIST, "lset", &call.args[1]);
    Frame::ok()
}

/// LREM key count element: `count` > 0 from the head, < 0 from the tail, 0 all.
pub fn lrem(call: &mut Call<'_>) -> Frame {
    let Some(count) = parse_i64(&call.args[2]) else {
        return NOT_INTEGER;
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let values = match state_of(&mut access, Kind::List) {
        Ok(Some(state)) => view::list_values(&state),
        Ok(None) => return Frame::Integer(0),
        Err(error) => return error,
    };
    let matching = values
        .iter()
        .enumerate()
        .filter(|(_, value)| **value == call.args[3])
        .map(|(index, _)| index);
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let indexes: Vec<usize> = if count < 0 {
        matching.rev().take(limit).collect()
    } else {
        matching.take(limit).collect()
    };
    let count = indexes.len() as i64;
    if !indexes.is_empty() {
        let emptied = indexes.len() == values.len();
        call.wrote(access.write(Op::ListRemove {
            key: call.args[1].clone(),
            indexes,
        }));
        removed(call, "lrem", &call.args[1], emptied);
    }
    Frame::Integer(count)
}

/// LTRIM key start stop
pub fn ltrim(call: &mut Call<'_>) -> Frame {
    let (Some(start), Some(end)) = (parse_i64(&call.args[2]), parse_i64(&call.args[3])) else {
        return NOT_INTEGER;
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let len = match state_of(&mut access, Kind::List) {
        Ok(Some(state)) => view::len(&state),
        Ok(None) => return Frame::ok(),
        Err(error) => return error,
    };
    let kept = span(start, end, len);
    let indexes: Vec<usize> = (0..len)
        .filter(|index| !kept.is_some_and(|(start, end)| (start..=end).contains(index)))
        .collect();
    // Redis announces `ltrim` even when nothing was trimmed.
    let emptied = kept.is_none();
    if !indexes.is_empty() {
        call.wrote(access.write(Op::ListRemove {
            key: call.args[1].clone(),
            indexes,
        }));
    }
    removed(call, "ltrim", &call.args[1], emptied);
    Frame::ok()
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
pub fn lpos(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let (mut rank, mut count, mut maxlen) = (1i64, None::<usize>, 0usize);
    let mut index = 3;
    while index < args.len() {
        let Some(value) = args.get(index + 1) else {
            return SYNTAX;
        };
        if is(&args[index], "rank") {
            match parse_i64(value) {
                Some(0) => return Frame::error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"),
                Some(i64::MIN) => return Frame::error("ERR value is out of range"),
                Some(value) => rank = value,
                None => return NOT_INTEGER,
            }
        } else if is(&args[index], "count") {
            match parse_i64(value) {
                Some(value) if value >= 0 => count = Some(value as usize),
                _ => return Frame::error("ERR COUNT can't be negative"),
            }
        } else if is(&args[index], "maxlen") {
            match parse_i64(value) {
                Some(value) if value >= 0 => maxlen = value as usize,
                _ => return Frame::error("ERR MAXLEN can't be negative"),
            }
        } else {
            return SYNTAX;
        }
        index += 2;
    }
    let values = match values(call) {
        Ok(values) => values,
        Err(error) => return error,
    };
    let scanned = if maxlen == 0 {
        values.len()
    } else {
        maxlen.min(values.len())
    };
    let order: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..scanned)
    } else {
        Box::new((values.len() - scanned..values.len()).rev())
    };
    let wanted = match count {
        Some(0) => usize::MAX,
        Some(count) => count,
        None => 1,
    };
    let found: Vec<Frame> = order
        .filter(|at| values[*at] == args[2])
        .skip(rank.unsigned_abs() as usize - 1)
        .take(wanted)
        .map(|at| Frame::Integer(at as i64))
        .collect();
    match count {
        Some(_) => Frame::Array(found),
        None => found.into_iter().next().unwrap_or(Frame::Null),
    }
}

/// LINSERT key BEFORE|AFTER pivot element
pub fn linsert(call: &mut Call<'_>) -> Frame {
    let after = if is(&call.args[2], "after") {
        true
    } else if is(&call.args[2], "before") {
        false
    } else {
        return SYNTAX;
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let values = match state_of(&mut access, Kind::List) {
        Ok(Some(state)) => view::list_values(&state),
        Ok(None) => return Frame::Integer(0),
        Err(error) => return error,
    };
    let Some(pivot) = values.iter().position(|value| *value == call.args[3]) else {
        return Frame::Integer(-1);
    };
    call.wrote(access.write(Op::ListInsert {
        key: call.args[1].clone(),
        index: pivot + usize::from(after),
        values: vec![call.args[4].clone()],
    }));
    call.notify(KeyspaceEvents::LIST, "linsert", &call.args[1]);
    Frame::Integer(values.len() as i64 + 1)
}

fn end_of(arg: &[u8]) -> Option<End> {
    if is(arg, "left") {
        Some(End::Left)
    } else if is(arg, "right") {
        Some(End::Right)
    } else {
        None
    }
}

/// Moves one element from an end of `source` to an end of `destination`, both locked at once.
fn move_element(call: &mut Call<'_>, from: End, to: End) -> Frame {
    let (source, destination) = (call.args[1].clone(), call.args[2].clone());
    let mut access = call.state.engine.keys(&[&source, &destination]);
    let values = match access.get(&source) {
        None => return Frame::Null,
        Some(entry) if entry.kind() != Kind::List => return WRONG_TYPE,
        Some(entry) => entry
            .state()
            .map(|state| view::list_values(&state))
            .unwrap_or_default(),
    };
    if values.is_empty() {
        return Frame::Null;
    }
    if access
        .get(&destination)
        .is_some_and(|entry| entry.kind() != Kind::List)
    {
        return WRONG_TYPE;
    }
    let index = match from {
        End::Left => 0,
        End::Right => values.len() - 1,
    };
    let value = values[index].clone();
    // The push goes first, as in Redis: its events (`new` of a created destination, the push)
    // come before the pop's, and a one-element list moved onto itself is never emptied. On
    // one list a push at the head moves the popped element one place down.
    let same = source == destination;
    let mut receipt = access.write(Op::ListPush {
        key: destination.clone(),
        end: to,
        values: vec![value.clone()],
    });
    let at = index + usize::from(same && to == End::Left);
    receipt.merge(access.write(Op::ListRemove {
        key: source.clone(),
        indexes: vec![at],
    }));
    call.notify(KeyspaceEvents::LIST, push_event(to), &destination);
    removed(call, pop_event(from), &source, !same && values.len() == 1);
    drop(access);
    call.wrote(receipt);
    Frame::Bulk(value)
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
pub fn lmove(call: &mut Call<'_>) -> Frame {
    match (end_of(&call.args[3]), end_of(&call.args[4])) {
        (Some(from), Some(to)) => move_element(call, from, to),
        _ => SYNTAX,
    }
}

/// RPOPLPUSH source destination
pub fn rpoplpush(call: &mut Call<'_>) -> Frame {
    move_element(call, End::Right, End::Left)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    fn bulks(items: &[&str]) -> Frame {
        Frame::Array(items.iter().map(|item| bulk(item)).collect())
    }

    #[test]
    fn list_commands() {
        let mut h = Harness::new();
        assert_eq!(h.run("RPUSH l a b c"), Frame::Integer(3));
        assert_eq!(h.run("LPUSH l z y"), Frame::Integer(5));
        assert_eq!(h.run("LRANGE l 0 -1"), bulks(&["y", "z", "a", "b", "c"]));
        assert_eq!(h.run("LPUSHX nope x"), Frame::Integer(0));
        assert_eq!(h.run("LLEN l"), Frame::Integer(5));
        assert_eq!(h.run("LINDEX l -1"), bulk("c"));
        assert_eq!(h.run("LINDEX l 9"), Frame::Null);
        assert_eq!(h.run("LSET l 1 Z"), Frame::ok());
        assert_eq!(h.run("LSET l 9 Z"), err("ERR index out of range"));
        assert_eq!(h.run("LSET nope 0 Z"), err("ERR no such key"));
        assert_eq!(h.run("LINSERT l BEFORE a x"), Frame::Integer(6));
        assert_eq!(h.run("LINSERT l AFTER c end"), Frame::Integer(7));
        assert_eq!(h.run("LINSERT l AFTER nope x"), Frame::Integer(-1));
        assert_eq!(
            h.run("LRANGE l 0 -1"),
            bulks(&["y", "Z", "x", "a", "b", "c", "end"])
        );
        assert_eq!(h.run("LPOS l b"), Frame::Integer(4));
        assert_eq!(h.run("RPUSH l b b"), Frame::Integer(9));
        assert_eq!(
            h.run("LPOS l b RANK -1 COUNT 2"),
            Frame::Array(vec![Frame::Integer(8), Frame::Integer(7)])
        );
        assert_eq!(
            h.run("LPOS l b COUNT 0 MAXLEN 5"),
            Frame::Array(vec![Frame::Integer(4)])
        );
        assert_eq!(h.run("LREM l -2 b"), Frame::Integer(2));
        assert_eq!(h.run("LPOP l"), bulk("y"));
        assert_eq!(h.run("RPOP l 2"), bulks(&["end", "c"]));
        assert_eq!(h.run("RPOP nope 2"), Frame::NullArray);
        assert_eq!(h.run("LPOP l 0"), bulks(&[]));
        assert_eq!(
            h.run("LPOP l -1"),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(h.run("LTRIM l 1 -1"), Frame::ok());
        assert_eq!(h.run("LRANGE l 0 -1"), bulks(&["x", "a", "b"]));
        assert_eq!(h.run("LMOVE l m RIGHT LEFT"), bulk("b"));
        assert_eq!(h.run("RPOPLPUSH l l"), bulk("a"));
        assert_eq!(h.run("LRANGE l 0 -1"), bulks(&["a", "x"]));
        assert_eq!(h.run("LMOVE l m UP LEFT"), err("ERR syntax error"));
        assert_eq!(h.run("LTRIM l 5 10"), Frame::ok());
        assert_eq!(h.run("EXISTS l"), Frame::Integer(0));
        h.run("SET s v");
        assert_eq!(
            h.run("LMOVE m s LEFT LEFT"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }
}
