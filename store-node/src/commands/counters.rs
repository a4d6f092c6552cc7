//! Counters: INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT on strings, HINCRBY and HINCRBYFLOAT on
//! hash fields. Each node keeps its own contribution to a counter, so increments made on
//! different nodes at once all count; the value is the base (what `SET` wrote) plus every
//! node's total, and `GET` on a node shows the contributions that node has received
//! (docs/replication.md).

use bytes::Bytes;

use super::flags::{DENY_OOM, WRITE};
use super::typed::state_of;
use super::CommandSpec;
use super::{parse_i64, Call, KeyspaceEvents, NOT_INTEGER};
use crate::protocol::Frame;
use crate::store::state::number::{parse_number, Number};
use crate::store::state::view;
use crate::store::{Kind, Op};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("incr", 2, WRITE | DENY_OOM, incr),
    spec!("decr", 2, WRITE | DENY_OOM, decr),
    spec!("incrby", 3, WRITE | DENY_OOM, incrby),
    spec!("decrby", 3, WRITE | DENY_OOM, decrby),
    spec!("incrbyfloat", 3, WRITE | DENY_OOM, incrbyfloat),
    spec!("hincrby", 4, WRITE | DENY_OOM, hincrby),
    spec!("hincrbyfloat", 4, WRITE | DENY_OOM, hincrbyfloat),
];

const OVERFLOW: Frame = Frame::error("ERR increment or decrement would overflow");
const NOT_FLOAT: Frame = Frame::error("ERR value is not a valid float");
const NAN_OR_INFINITY: Frame = Frame::error("ERR increment would produce NaN or Infinity");

/// Adds to the counter `field` (`None`: the string itself) of the key, under one lock of the
/// key: `next` computes the new value from the current text (`None`: nothing there) and gives
/// the increment and result texts to write, and the reply.
fn add(
    call: &mut Call<'_>,
    field: Option<Bytes>,
    event: &str,
    next: impl FnOnce(Option<Bytes>) -> Result<(Bytes, Bytes, Frame), Frame>,
) -> Frame {
    let kind = if field.is_some() {
        Kind::Hash
    } else {
        Kind::String
    };
    let mut access = call.state.engine.key(&call.args[1]);
    let state = match state_of(&mut access, kind) {
        Ok(state) => state,
        Err(error) => return error,
    };
    let value = state.and_then(|state| match &field {
        Some(field) => view::hash_field(&state, field),
        None => view::string_value(&state),
    });
    let (by, result, reply) = match next(value) {
        Ok(next) => next,
        Err(error) => return error,
    };
    call.wrote(access.write(Op::Increment {
        key: call.args[1].clone(),
        field,
        by,
        result,
    }));
    let class = match kind {
        Kind::Hash => KeyspaceEvents::HASH,
        _ => KeyspaceEvents::STRING,
    };
    call.notify(class, event, &call.args[1]);
    reply
}

/// An integer increment of the string or of a hash field.
fn add_integer(call: &mut Call<'_>, field: Option<Bytes>, by: i64, not_integer: Frame) -> Frame {
    let event = if field.is_some() { "hincrby" } else { "incrby" };
    add(call, field, event, |value| {
        let value = match value {
            None => 0,
            Some(text) => parse_i64(&text).ok_or(not_integer)?,
        };
        let next = value.checked_add(by).ok_or(OVERFLOW)?;
        Ok((
            Bytes::from(by.to_string()),
            Bytes::from(next.to_string()),
            Frame::Integer(next),
        ))
    })
}

/// A float increment of the string or of a hash field.
fn add_float(call: &mut Call<'_>, field: Option<Bytes>, by: &[u8], not_float: Frame) -> Frame {
    let Some(increment) = parse_number(by) else {
        return NOT_FLOAT;
    };
    let event = if field.is_some() {
        "hincrbyfloat"
    } else {
        "incrbyfloat"
    };
    add(call, field, event, |value| {
        let value = match value {
            None => Number::Int(0),
            Some(text) => parse_number(&text).ok_or(not_float)?,
        };
        let next = value.plus(increment);
        if !next.is_finite() || !increment.is_finite() || !value.is_finite() {
            return Err(NAN_OR_INFINITY);
        }
        let result = next.to_text();
        Ok((increment.to_text(), result.clone(), Frame::Bulk(result)))
    })
}

/// INCR key
pub fn incr(call: &mut Call<'_>) -> Frame {
    add_integer(call, None, 1, NOT_INTEGER)
}

/// DECR key
pub fn decr(call: &mut Call<'_>) -> Frame {
    add_integer(call, None, -1, NOT_INTEGER)
}

/// INCRBY key increment
pub fn incrby(call: &mut Call<'_>) -> Frame {
    match parse_i64(&call.args[2]) {
        Some(by) => add_integer(call, None, by, NOT_INTEGER),
        None => NOT_INTEGER,
    }
}

/// DECRBY key decrement
pub fn decrby(call: &mut Call<'_>) -> Frame {
    match parse_i64(&call.args[2]) {
        Some(i64::MIN) => Frame::error("ERR decrement would overflow"),
        Some(by) => add_integer(call, None, -by, NOT_INTEGER),
        None => NOT_INTEGER,
    }
}

/// INCRBYFLOAT key increment
pub fn incrbyfloat(call: &mut Call<'_>) -> Frame {
    let by = call.args[2].clone();
    add_float(call, None, &by, NOT_FLOAT)
}

/// HINCRBY key field increment
pub fn hincrby(call: &mut Call<'_>) -> Frame {
    let Some(by) = parse_i64(&call.args[3]) else {
        return NOT_INTEGER;
    };
    let field = call.args[2].clone();
    add_integer(
        call,
        Some(field),
        by,
        Frame::error("ERR hash value is not an integer"),
    )
}

/// HINCRBYFLOAT key field increment
pub fn hincrbyfloat(call: &mut Call<'_>) -> Frame {
    let (field, by) = (call.args[2].clone(), call.args[3].clone());
    add_float(
        call,
        Some(field),
        &by,
        Frame::error("ERR hash value is not a float"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn integer_counters() {
        let mut h = Harness::new();
        assert_eq!(h.run("INCR c"), Frame::Integer(1));
        assert_eq!(h.run("INCRBY c 41"), Frame::Integer(42));
        assert_eq!(h.run("DECRBY c 2"), Frame::Integer(40));
        assert_eq!(h.run("DECR c"), Frame::Integer(39));
        assert_eq!(h.run("GET c"), bulk("39"));
        assert_eq!(
            h.run("DECRBY c -9223372036854775808"),
            err("ERR decrement would overflow")
        );
        assert_eq!(h.run("SET c 9223372036854775807"), Frame::ok());
        assert_eq!(
            h.run("INCR c"),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(h.run("SET s abc"), Frame::ok());
        assert_eq!(
            h.run("INCR s"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("SET t 5"), Frame::ok());
        h.run("EXPIRE t 100");
        assert_eq!(h.run("INCR t"), Frame::Integer(6));
        assert_eq!(h.run("TTL t"), Frame::Integer(100));
    }

    #[test]
    fn float_counters_print_like_redis() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET f 10.50"), Frame::ok());
        assert_eq!(h.run("INCRBYFLOAT f 0.1"), bulk("10.6"));
        assert_eq!(h.run("INCRBYFLOAT f -5"), bulk("5.6"));
        assert_eq!(h.run("SET f 5.0e3"), Frame::ok());
        assert_eq!(h.run("INCRBYFLOAT f 2.0e2"), bulk("5200"));
        assert_eq!(h.run("INCRBYFLOAT g 0.1"), bulk("0.1"));
        assert_eq!(h.run("INCRBYFLOAT g 0.2"), bulk("0.3"));
        assert_eq!(
            h.run("INCRBYFLOAT g x"),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            h.run("INCRBYFLOAT g inf"),
            err("ERR increment would produce NaN or Infinity")
        );
        assert_eq!(h.run("HINCRBYFLOAT h f 1.5"), bulk("1.5"));
        assert_eq!(h.run("HSET h s abc"), Frame::Integer(1));
        assert_eq!(
            h.run("HINCRBYFLOAT h s 1"),
            err("ERR hash value is not a float")
        );
        assert_eq!(
            h.run("HINCRBY h s 1"),
            err("ERR hash value is not an integer")
        );
        assert_eq!(h.run("HINCRBY h n 3"), Frame::Integer(3));
    }
}
