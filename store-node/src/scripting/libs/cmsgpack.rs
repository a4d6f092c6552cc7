//! `cmsgpack`: the MessagePack library Redis bundles (lua-cmsgpack 0.4.0), with its exact
//! bytes and errors. `pack` encodes each argument and concatenates them: a number that is a
//! whole 64-bit integer as the smallest integer format, any other as a float when a float
//! holds it exactly and as a double otherwise; a string as fixstr/str8/str16/str32; a table
//! whose keys are exactly `1..n` as an array and any other as a map (in Lua's iteration
//! order); anything else, and a table nested 16 deep, as nil. `unpack` decodes every value of
//! the input (the bin and ext formats are "bad data format", as in the C library);
//! `unpack_one` and `unpack_limit` decode some and return the offset to go on from first
//! (-1 once the input is used up).

use mlua::{Lua, MultiValue, Table, Value};

use super::args::{stack_overflow, truncate, Args, MAX_C_STACK};

/// Tables nested deeper are encoded as nil (`LUACMSGPACK_MAX_NESTING`), which also ends
/// a table that contains itself.
const MAX_NESTING: usize = 16;

/// The message of an overflowing decode (`luaL_checkstack` in `mp_decode_to_lua_type`).
const TOO_MANY_VALUES: &str =
    "too many return values at once; use unpack_one or unpack_limit instead.";

/// A number's value as a 64-bit integer when it is one exactly (`IS_INT64_EQUIVALENT`); C's
/// cast gives `i64::MIN` for what does not fit, which then compares unequal to the number.
fn whole_i64(value: f64) -> Option<i64> {
    let integer = truncate(value);
    (!value.is_infinite() && integer as f64 == value).then_some(integer)
}

fn encode_integer(out: &mut Vec<u8>, value: i64) {
    match value {
        0..=127 => out.push(value as u8),
        128..=0xff => out.extend_from_slice(&[0xcc, value as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        0x1_0000_0000.. => {
            out.push(0xcf);
            out.extend_from_slice(&(value as u64).to_be_bytes());
        }
        -32..=-1 => out.push(value as i8 as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, value as i8 as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(value as i16).to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(value as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

fn encode_number(out: &mut Vec<u8>, value: f64) {
    if let Some(integer) = whole_i64(value) {
        return encode_integer(out, integer);
    }
    let single = value as f32;
    if f64::from(single) == value {
        out.push(0xca);
        out.extend_from_slice(&single.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// An array or map header: `fix` is the fix-format's first byte, `wide` the 16-bit format's
/// (the 32-bit one follows it).
fn encode_header(out: &mut Vec<u8>, count: usize, fix: u8, wide: u8) {
    if count <= 15 {
        out.push(fix | count as u8);
    } else if count <= 0xffff {
        out.push(wide);
        out.extend_from_slice(&(count as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(count as u32).to_be_bytes());
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(value) => Some(*value as f64),
        Value::Number(value) => Some(*value),
        _ => None,
    }
}

/// `table_is_an_array`: every key a positive whole number (one a C `int` holds) and the
/// largest key equal to the number of keys, so the keys are exactly `1..n`.
fn array_length(table: &Table) -> mlua::Result<Option<usize>> {
    let (mut count, mut max) = (0usize, 0f64);
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        match number_of(&key) {
            Some(index) if index > 0.0 && index <= f64::from(i32::MAX) && index.fract() == 0.0 => {
                max = max.max(index);
                count += 1;
            }
            _ => return Ok(None),
        }
    }
    Ok((max == count as f64).then_some(count))
}

fn encode_value(out: &mut Vec<u8>, value: &Value, level: usize) -> mlua::Result<()> {
    match value {
        Value::String(text) => encode_bytes(out, &text.as_bytes()),
        Value::Boolean(value) => out.push(if *value { 0xc3 } else { 0xc2 }),
        Value::Integer(value) => encode_number(out, *value as f64),
        Value::Number(value) => encode_number(out, *value),
        Value::Table(table) if level < MAX_NESTING => match array_length(table)? {
            Some(length) => {
                encode_header(out, length, 0x90, 0xdc);
                for index in 1..=length {
                    encode_value(out, &table.raw_get::<Value>(index)?, level + 1)?;
                }
            }
            None => {
                let count = table.pairs::<Value, Value>().count();
                encode_header(out, count, 0x80, 0xde);
                for pair in table.pairs::<Value, Value>() {
                    let (key, item) = pair?;
                    encode_value(out, &key, level + 1)?;
                    encode_value(out, &item, level + 1)?;
                }
            }
        },
        _ => out.push(0xc0),
    }
    Ok(())
}

/// Why a decode stopped.
enum DecodeError {
    /// The input ended inside a value.
    Missing,
    /// A byte that starts no supported format.
    BadFormat,
    /// A Lua error (the stack limit, a nil or NaN map key, memory).
    Lua(mlua::Error),
}

impl From<mlua::Error> for DecodeError {
    fn from(error: mlua::Error) -> DecodeError {
        DecodeError::Lua(error)
    }
}

/// A cursor over the input.
struct Decoder<'a> {
    lua: &'a Lua,
    input: &'a [u8],
    position: usize,
}

impl Decoder<'_> {
    fn left(&self) -> usize {
        self.input.len() - self.position
    }

    /// The `count` bytes after the first byte of the value at the cursor.
    fn after_tag(&self, count: usize) -> Result<&[u8], DecodeError> {
        self.input
            .get(self.position + 1..self.position + 1 + count)
            .ok_or(DecodeError::Missing)
    }

    fn length(&self, bytes: usize) -> Result<usize, DecodeError> {
        let digits = self.after_tag(bytes)?;
        Ok(digits
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte)))
    }

    /// A string of `length` bytes after a header of `header` bytes.
    fn string(&mut self, header: usize, length: usize) -> Result<Value, DecodeError> {
        let start = self.position + header;
        let Some(bytes) = self.input.get(start..start + length) else {
            return Err(DecodeError::Missing);
        };
        let text = self.lua.create_string(bytes)?;
        self.position = start + length;
        Ok(Value::String(text))
    }

    fn number(
        &mut self,
        size: usize,
        convert: impl Fn(&[u8]) -> f64,
    ) -> Result<Value, DecodeError> {
        let value = convert(self.after_tag(size)?);
        self.position += 1 + size;
        Ok(Value::Number(value))
    }

    /// Decodes the value at the cursor; `used` is the stack slots the C library would hold
    /// above its base at this point, which bounds the values and nesting it can decode.
    fn value(&mut self, used: usize) -> Result<Value, DecodeError> {
        if self.left() == 0 {
            return Err(DecodeError::Missing);
        }
        if used + 1 > MAX_C_STACK {
            return Err(stack_overflow(self.lua, TOO_MANY_VALUES).into());
        }
        let tag = self.input[self.position];
        let be = |bytes: &[u8]| {
            bytes
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
        };
        match tag {
            0xcc => self.number(1, |bytes| f64::from(bytes[0])),
            0xd0 => self.number(1, |bytes| f64::from(bytes[0] as i8)),
            0xcd => self.number(2, |bytes| be(bytes) as f64),
            0xd1 => self.number(2, |bytes| f64::from(be(bytes) as u16 as i16)),
            0xce => self.number(4, |bytes| be(bytes) as f64),
            0xd2 => self.number(4, |bytes| f64::from(be(bytes) as u32 as i32)),
            // Pushed as a Lua integer, which is signed: 2^63 and above wrap around.
            0xcf | 0xd3 => self.number(8, |bytes| be(bytes) as i64 as f64),
            0xc0 => {
                self.position += 1;
                Ok(Value::Nil)
            }
            0xc2 | 0xc3 => {
                self.position += 1;
                Ok(Value::Boolean(tag == 0xc3))
            }
            0xca => self.number(4, |bytes| f64::from(f32::from_bits(be(bytes) as u32))),
            0xcb => self.number(8, |bytes| f64::from_bits(be(bytes))),
            0xd9 => {
                let length = self.length(1)?;
                self.string(2, length)
            }
            0xda => {
                let length = self.length(2)?;
                self.string(3, length)
            }
            0xdb => {
                let length = self.length(4)?;
                self.string(5, length)
            }
            0xdc..=0xdf => {
                let bytes = if tag & 1 == 0 { 2 } else { 4 };
                let length = self.length(bytes)?;
                self.position += 1 + bytes;
                if tag < 0xde {
                    self.array(length, used)
                } else {
                    self.map(length, used)
                }
            }
            _ if tag & 0x80 == 0 => {
                self.position += 1;
                Ok(Value::Number(f64::from(tag)))
            }
            _ if tag & 0xe0 == 0xe0 => {
                self.position += 1;
                Ok(Value::Number(f64::from(tag as i8)))
            }
            _ if tag & 0xe0 == 0xa0 => self.string(1, usize::from(tag & 0x1f)),
            _ if tag & 0xf0 == 0x90 => {
                self.position += 1;
                self.array(usize::from(tag & 0x0f), used)
            }
            _ if tag & 0xf0 == 0x80 => {
                self.position += 1;
                self.map(usize::from(tag & 0x0f), used)
            }
            _ => Err(DecodeError::BadFormat),
        }
    }

    /// `length` items; the table and each index sit on the C library's stack meanwhile.
    fn array(&mut self, length: usize, used: usize) -> Result<Value, DecodeError> {
        let table = self.lua.create_table()?;
        for index in 1..=length {
            let item = self.value(used + 2)?;
            table.raw_set(index, item)?;
        }
        Ok(Value::Table(table))
    }

    /// `length` pairs; the table, and the key while its value is decoded, sit on the stack.
    fn map(&mut self, length: usize, used: usize) -> Result<Value, DecodeError> {
        let table = self.lua.create_table()?;
        for _ in 0..length {
            let key = self.value(used + 1)?;
            let item = self.value(used + 2)?;
            match &key {
                // `lua_settable` raises these without a position: it runs inside C.
                Value::Nil => return Err(mlua::Error::runtime("table index is nil").into()),
                Value::Number(number) if number.is_nan() => {
                    return Err(mlua::Error::runtime("table index is NaN").into())
                }
                _ => table.raw_set(key, item)?,
            }
        }
        Ok(Value::Table(table))
    }
}

/// `mp_unpack_full`: decodes up to `limit` values from `offset` (both 0: every value, and no
/// offset in the results).
fn unpack_full(args: &Args<'_>, lua: &Lua, limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let input = args.string(1)?;
    let input = input.as_bytes();
    let length = input.len();
    if offset < 0 || limit < 0 {
        return Err(args.fail(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, length as i32
        )));
    }
    if offset as u64 > length as u64 {
        return Err(args.fail(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, length as i32
        )));
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all {
        i64::from(i32::MAX)
    } else {
        limit
    };
    let mut decoder = Decoder {
        lua,
        input: &input,
        position: offset as usize,
    };
    let mut values = Vec::new();
    while decoder.left() > 0 && (values.len() as i64) < limit {
        // The input string stays on the stack below the values.
        match decoder.value(1 + values.len()) {
            Ok(value) => values.push(value),
            Err(DecodeError::Missing) => return Err(args.fail("Missing bytes in input.")),
            Err(DecodeError::BadFormat) => return Err(args.fail("Bad data format in input.")),
            Err(DecodeError::Lua(error)) => return Err(error),
        }
    }
    if !decode_all {
        let next = if decoder.left() == 0 {
            -1.0
        } else {
            decoder.position as f64
        };
        values.insert(0, Value::Number(next));
    }
    Ok(values.into_iter().collect())
}

/// Registers the `cmsgpack` table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.raw_set(
        "pack",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            if args.is_empty() {
                return Err(args.error(0, "MessagePack pack needs input."));
            }
            let mut out = Vec::new();
            for index in 1..=args.len() {
                if let Some(value) = args.get(index) {
                    encode_value(&mut out, value, 0)?;
                }
            }
            lua.create_string(out)
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            unpack_full(&args, lua, 0, 0)
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack_one",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            let offset = args.optional_integer(2, 0)?;
            unpack_full(&args, lua, 1, offset)
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack_limit",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            let limit = args.integer(2)?;
            let offset = args.optional_integer(3, 0)?;
            unpack_full(&args, lua, limit, offset)
        })?,
    )?;
    cmsgpack.raw_set("_NAME", "cmsgpack")?;
    cmsgpack.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    cmsgpack.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    cmsgpack.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    globals.raw_set("cmsgpack", cmsgpack)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(value: f64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_number(&mut out, value);
        out
    }

    #[test]
    fn numbers_take_the_smallest_format_like_lua_cmsgpack() {
        assert_eq!(packed(1.0), [0x01]);
        assert_eq!(packed(-1.0), [0xff]);
        assert_eq!(packed(200.0), [0xcc, 200]);
        assert_eq!(packed(-200.0), [0xd1, 0xff, 0x38]);
        assert_eq!(packed(70000.0), [0xce, 0, 1, 0x11, 0x70]);
        assert_eq!(packed(-0.0), [0x00]);
        assert_eq!(packed(1.5), [0xca, 0x3f, 0xc0, 0, 0]);
        assert_eq!(packed(0.1)[0], 0xcb);
        // 2^63 is no 64-bit integer: a float holds it exactly.
        assert_eq!(packed(2f64.powi(63)), [0xca, 0x5f, 0, 0, 0]);
        assert_eq!(packed(-(2f64.powi(63))), [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(packed(f64::INFINITY), [0xca, 0x7f, 0x80, 0, 0]);
    }

    #[test]
    fn strings_take_the_smallest_header() {
        let mut out = Vec::new();
        encode_bytes(&mut out, &[b'a'; 31]);
        assert_eq!(out[0], 0xbf);
        out.clear();
        encode_bytes(&mut out, &[b'a'; 32]);
        assert_eq!(&out[..2], [0xd9, 32]);
        out.clear();
        encode_bytes(&mut out, &[b'a'; 256]);
        assert_eq!(&out[..3], [0xda, 1, 0]);
        out.clear();
        encode_bytes(&mut out, &vec![b'a'; 65536]);
        assert_eq!(&out[..5], [0xdb, 0, 1, 0, 0]);
    }
}
