//! Redis's conversions between command replies and Lua values, both ways.
//!
//! Reply → Lua (what `redis.call` returns): integers become numbers, bulk strings strings,
//! statuses `{ok=...}`, errors `{err=...}`, arrays tables; a null is `false` under RESP2 and
//! `nil` under RESP3 (`redis.setresp(3)`), where maps, sets, doubles, booleans and big numbers
//! keep their type (`{map=...}`, `{set=...}`, `{double=...}`, `true`/`false`,
//! `{big_number=...}`) instead of being flattened as a RESP2 client would see them.
//!
//! Lua → reply (what a script returns): a number is an integer (truncated toward zero), a
//! string a bulk string, `true` the integer 1 and `false` a null (RESP3 booleans after
//! `redis.setresp(3)`), `nil` a null, a table with `err` an
//! error, with `ok` a status, `double`/`map`/`set`/`big_number` their RESP3 types, any other
//! table an array of its elements up to the first `nil`.

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use crate::protocol::{Frame, Protocol};

/// Deepest nesting of a script's reply that is converted (Redis stops at the same kind of
/// bound to protect its stack).
const MAX_DEPTH: usize = 64;

/// A command's reply as a Lua value, for a script speaking `protocol`.
pub fn frame_to_lua(lua: &Lua, frame: Frame, protocol: Protocol) -> mlua::Result<Value> {
    Ok(match frame {
        Frame::Simple(text) => {
            let table = lua.create_table()?;
            table.raw_set("ok", lua.create_string(text.as_bytes())?)?;
            Value::Table(table)
        }
        Frame::Error(text) => error_table(lua, &text)?,
        Frame::Integer(value) => Value::Number(value as f64),
        Frame::Bulk(data) | Frame::Verbatim(data) => Value::String(lua.create_string(&data)?),
        Frame::Null | Frame::NullArray => match protocol {
            Protocol::Resp2 => Value::Boolean(false),
            Protocol::Resp3 => Value::Nil,
        },
        Frame::Array(items) | Frame::Push(items) | Frame::Sequence(items) => {
            array_to_lua(lua, items, protocol)?
        }
        Frame::Set(items) => match protocol {
            Protocol::Resp2 => array_to_lua(lua, items, protocol)?,
            Protocol::Resp3 => {
                let set = lua.create_table()?;
                for item in items {
                    set.raw_set(frame_to_lua(lua, item, protocol)?, true)?;
                }
                let table = lua.create_table()?;
                table.raw_set("set", set)?;
                Value::Table(table)
            }
        },
        Frame::Map(pairs) => match protocol {
            Protocol::Resp2 => array_to_lua(
                lua,
                pairs.into_iter().flat_map(|(key, value)| [key, value]),
                protocol,
            )?,
            Protocol::Resp3 => {
                let map = lua.create_table()?;
                for (key, value) in pairs {
                    map.raw_set(
                        frame_to_lua(lua, key, protocol)?,
                        frame_to_lua(lua, value, protocol)?,
                    )?;
                }
                let table = lua.create_table()?;
                table.raw_set("map", map)?;
                Value::Table(table)
            }
        },
        Frame::Double(value) => match protocol {
            Protocol::Resp2 => Value::String(
                lua.create_string(crate::protocol::frame::format_double(value).as_bytes())?,
            ),
            Protocol::Resp3 => {
                let table = lua.create_table()?;
                table.raw_set("double", value)?;
                Value::Table(table)
            }
        },
        Frame::Boolean(value) => match protocol {
            Protocol::Resp2 => Value::Number(f64::from(u8::from(value))),
            Protocol::Resp3 => Value::Boolean(value),
        },
        Frame::BigNumber(digits) => match protocol {
            Protocol::Resp2 => Value::String(lua.create_string(&digits)?),
            Protocol::Resp3 => {
                let table = lua.create_table()?;
                table.raw_set("big_number", lua.create_string(&digits)?)?;
                Value::Table(table)
            }
        },
    })
}

/// A Lua number passed to `redis.call`, as Redis 7.2 writes it (`fpconv_dtoa`): the shortest
/// digits that read back as the same double, as a plain integer up to 7 trailing zeros
/// (`100000000` is `1e+8`), as a plain decimal down to 6 leading zeros, otherwise in
/// scientific notation; `nan`, `inf`, `-inf`. Lua's own `tostring` keeps only 14 digits,
/// which would change `9007199254740991`. (Redis 7.0 used `%.17g`, which writes `0.1` as
/// `0.10000000000000001`; the shortest digits come from Rust's formatting, where fpconv's
/// Grisu2 may rarely pick a longer, equally exact form.)
pub fn number_argument(value: f64) -> String {
    if value.is_nan() {
        return if value.is_sign_negative() {
            "-nan"
        } else {
            "nan"
        }
        .to_string();
    }
    if value.is_infinite() {
        return if value < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let count = digits.len() as i32;
    // value = digits * 10^k
    let k = exponent - (count - 1);
    let magnitude = (k + count - 1).abs();
    let mut out = String::new();
    if value < 0.0 {
        out.push('-');
    }
    if k >= 0 && magnitude < count + 7 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', k as usize));
    } else if k < 0 && (k > -7 || magnitude < 4) {
        let offset = count + k;
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            out.push_str(&digits);
        } else {
            out.push_str(&digits[..offset as usize]);
            out.push('.');
            out.push_str(&digits[offset as usize..]);
        }
    } else {
        let shown = &digits[..digits.len().min(if value < 0.0 { 17 } else { 18 })];
        out.push_str(&shown[..1]);
        if shown.len() > 1 {
            out.push('.');
            out.push_str(&shown[1..]);
        }
        let leading = k + count - 1;
        out.push('e');
        out.push(if leading < 0 { '-' } else { '+' });
        out.push_str(&magnitude.to_string());
    }
    out
}

/// `{err = text}`.
pub fn error_table(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set("err", lua.create_string(text)?)?;
    Ok(Value::Table(table))
}

fn array_to_lua(
    lua: &Lua,
    items: impl IntoIterator<Item = Frame>,
    protocol: Protocol,
) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    for (index, item) in items.into_iter().enumerate() {
        table.raw_set(index + 1, frame_to_lua(lua, item, protocol)?)?;
    }
    Ok(Value::Table(table))
}

/// A script's return value as a reply; `resp3` when the script called `redis.setresp(3)`,
/// which makes booleans RESP3 booleans.
pub fn lua_to_frame(value: &Value, resp3: bool) -> Frame {
    lua_to_frame_at(value, 0, resp3)
}

fn lua_to_frame_at(value: &Value, depth: usize, resp3: bool) -> Frame {
    if depth > MAX_DEPTH {
        return Frame::error("ERR reached lua stack limit");
    }
    match value {
        Value::Nil => Frame::Null,
        Value::Boolean(value) if resp3 => Frame::Boolean(*value),
        Value::Boolean(true) => Frame::Integer(1),
        Value::Boolean(false) => Frame::Null,
        Value::Integer(value) => Frame::Integer(*value),
        Value::Number(value) => Frame::Integer(number_to_integer(*value)),
        Value::String(text) => Frame::Bulk(Bytes::copy_from_slice(&text.as_bytes())),
        Value::Table(table) => table_to_frame(table, depth, resp3),
        // Functions, userdata, threads: Redis answers a null for what it cannot convert.
        _ => Frame::Null,
    }
}

/// Lua numbers are doubles; Redis casts them to `long long` (toward zero, saturating here
/// where C would be undefined; 2^63 and beyond give `i64::MIN` as on x86-64 Redis).
fn number_to_integer(value: f64) -> i64 {
    if value.is_nan() {
        return i64::MIN;
    }
    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&value) {
        return i64::MIN;
    }
    value as i64
}

fn string_field(table: &Table, name: &str) -> Option<Bytes> {
    match table.raw_get::<Value>(name).ok()? {
        Value::String(text) => Some(Bytes::copy_from_slice(&text.as_bytes())),
        _ => None,
    }
}

fn table_to_frame(table: &Table, depth: usize, resp3: bool) -> Frame {
    if let Some(text) = string_field(table, "err") {
        // Redis trims the line ends an error ends with; the encoder turns the others into
        // spaces.
        let text = String::from_utf8_lossy(&text);
        return Frame::Error(text.trim_end_matches(['\r', '\n']).to_string().into());
    }
    if let Some(text) = string_field(table, "ok") {
        return Frame::Simple(String::from_utf8_lossy(&text).into_owned().into());
    }
    if let Ok(Value::Number(value)) = table.raw_get::<Value>("double") {
        return Frame::Double(value);
    }
    if let Ok(Value::Integer(value)) = table.raw_get::<Value>("double") {
        return Frame::Double(value as f64);
    }
    if let Some(digits) = string_field(table, "big_number") {
        return Frame::BigNumber(digits);
    }
    if let Ok(Value::Table(map)) = table.raw_get::<Value>("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(key, value)| {
                (
                    lua_to_frame_at(&key, depth + 1, resp3),
                    lua_to_frame_at(&value, depth + 1, resp3),
                )
            })
            .collect();
        return Frame::Map(pairs);
    }
    if let Ok(Value::Table(set)) = table.raw_get::<Value>("set") {
        let items = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(key, _)| lua_to_frame_at(&key, depth + 1, resp3))
            .collect();
        return Frame::Set(items);
    }
    let mut items = Vec::new();
    for index in 1.. {
        match table.raw_get::<Value>(index) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(item) => items.push(lua_to_frame_at(&item, depth + 1, resp3)),
        }
    }
    Frame::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_truncate_toward_zero_like_redis() {
        assert_eq!(number_to_integer(3.99), 3);
        assert_eq!(number_to_integer(-3.7), -3);
        assert_eq!(number_to_integer(2f64.powi(63)), i64::MIN);
        assert_eq!(number_to_integer(2f64.powi(53)), 9_007_199_254_740_992);
    }

    #[test]
    fn numbers_reach_commands_as_redis_7_2_writes_them() {
        assert_eq!(number_argument(9_007_199_254_740_991.0), "9007199254740991");
        assert_eq!(number_argument(0.1), "0.1");
        assert_eq!(number_argument(-0.5), "-0.5");
        assert_eq!(number_argument(3.0), "3");
        assert_eq!(number_argument(1e7), "10000000");
        assert_eq!(number_argument(1e8), "1e+8");
        assert_eq!(number_argument(123e6), "123000000");
        assert_eq!(number_argument(0.000001), "0.000001");
        assert_eq!(number_argument(1.5e-7), "1.5e-7");
        assert_eq!(number_argument(0.0001234), "1.234e-4");
        assert_eq!(number_argument(0.001234), "0.001234");
        assert_eq!(number_argument(123.456), "123.456");
        assert_eq!(number_argument(1e100), "1e+100");
        assert_eq!(number_argument(-2.5e-300), "-2.5e-300");
        assert_eq!(number_argument(f64::INFINITY), "inf");
        assert_eq!(number_argument(-0.0), "-0");
    }

    #[test]
    fn replies_convert_by_protocol() {
        let lua = Lua::new();
        let map = Frame::Map(vec![(Frame::bulk(b"a"), Frame::Integer(1))]);
        let Value::Table(flat) = frame_to_lua(&lua, map.clone(), Protocol::Resp2).unwrap() else {
            panic!("a table")
        };
        assert_eq!(flat.raw_len(), 2);
        assert_eq!(
            frame_to_lua(&lua, Frame::Null, Protocol::Resp2).unwrap(),
            Value::Boolean(false)
        );
        assert_eq!(
            frame_to_lua(&lua, Frame::Null, Protocol::Resp3).unwrap(),
            Value::Nil
        );
        let resp3 = frame_to_lua(&lua, map.clone(), Protocol::Resp3).unwrap();
        assert_eq!(lua_to_frame(&resp3, true), map);
    }
}
