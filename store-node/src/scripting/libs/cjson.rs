//! `cjson`: the JSON library Redis bundles (lua-cjson 2.1), implemented over mlua with its
//! observable behaviour: `cjson.encode` writes numbers with `%.14g`, escapes `/`, encodes a
//! table whose keys are all positive integers as an array (missing items as `null`, refusing
//! an excessively sparse one), any other table as an object, an empty table as `{}`, and
//! `cjson.null` as `null`; `cjson.decode` turns `null` into `cjson.null`.

use mlua::{LightUserData, Lua, MultiValue, Table, Value};

use super::args::{positioned, Args};
use super::format_g14;

/// Deepest nesting either direction accepts (lua-cjson's default).
const MAX_DEPTH: usize = 1000;

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn escape(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

fn encode_number(out: &mut Vec<u8>, value: f64) -> mlua::Result<()> {
    if !value.is_finite() {
        return Err(mlua::Error::runtime(
            "Cannot serialise number: must not be NaN or Inf",
        ));
    }
    out.extend_from_slice(format_g14(value).as_bytes());
    Ok(())
}

/// The array length of a table whose keys are all positive integers, `None` for an object.
fn array_length(table: &Table) -> mlua::Result<Option<usize>> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        let index = match key {
            Value::Integer(index) if index >= 1 => index as usize,
            Value::Number(index) if index >= 1.0 && index.fract() == 0.0 => index as usize,
            _ => return Ok(None),
        };
        max = max.max(index);
        items += 1;
    }
    if items == 0 {
        return Ok(None);
    }
    if max > 10 && max > items * 2 {
        return Err(mlua::Error::runtime(
            "Cannot serialise table: excessively sparse array",
        ));
    }
    Ok(Some(max))
}

fn encode_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> mlua::Result<()> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(data) if data.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        Value::Integer(value) => encode_number(out, *value as f64)?,
        Value::Number(value) => encode_number(out, *value)?,
        Value::String(text) => escape(out, &text.as_bytes()),
        Value::Table(table) => {
            if depth >= MAX_DEPTH {
                return Err(mlua::Error::runtime(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                )));
            }
            match array_length(table)? {
                Some(length) => {
                    out.push(b'[');
                    for index in 1..=length {
                        if index > 1 {
                            out.push(b',');
                        }
                        encode_value(out, &table.raw_get::<Value>(index)?, depth + 1)?;
                    }
                    out.push(b']');
                }
                None => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in table.pairs::<Value, Value>() {
                        let (key, item) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &key {
                            Value::String(text) => escape(out, &text.as_bytes()),
                            Value::Integer(_) | Value::Number(_) => {
                                let mut number = Vec::new();
                                encode_value(&mut number, &key, depth + 1)?;
                                escape(out, &number);
                            }
                            _ => {
                                return Err(mlua::Error::runtime(
                                    "Cannot serialise table: table key must be a number or string",
                                ))
                            }
                        }
                        out.push(b':');
                        encode_value(out, &item, depth + 1)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )))
        }
    }
    Ok(())
}

/// A JSON document as Lua values.
struct Decoder<'a> {
    lua: &'a Lua,
    input: &'a [u8],
    position: usize,
}

impl Decoder<'_> {
    fn error<T>(&self, what: &str) -> mlua::Result<T> {
        Err(mlua::Error::runtime(format!(
            "Expected {what} but found invalid token at character {}",
            self.position + 1
        )))
    }

    fn skip_space(&mut self) {
        while self
            .input
            .get(self.position)
            .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.position += 1;
        }
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        if depth > MAX_DEPTH {
            return Err(mlua::Error::runtime(format!(
                "Found too many nested data structures ({}) at character {}",
                depth,
                self.position + 1
            )));
        }
        self.skip_space();
        match self.input.get(self.position) {
            Some(b'{') => {
                self.position += 1;
                let table = self.lua.create_table()?;
                self.skip_space();
                if self.input.get(self.position) == Some(&b'}') {
                    self.position += 1;
                    return Ok(Value::Table(table));
                }
                loop {
                    self.skip_space();
                    if self.input.get(self.position) != Some(&b'"') {
                        return self.error("object key string");
                    }
                    let key = self.string()?;
                    self.skip_space();
                    if self.input.get(self.position) != Some(&b':') {
                        return self.error("colon");
                    }
                    self.position += 1;
                    let item = self.value(depth + 1)?;
                    table.raw_set(self.lua.create_string(&key)?, item)?;
                    self.skip_space();
                    match self.input.get(self.position) {
                        Some(b',') => self.position += 1,
                        Some(b'}') => {
                            self.position += 1;
                            return Ok(Value::Table(table));
                        }
                        _ => return self.error("comma or object end"),
                    }
                }
            }
            Some(b'[') => {
                self.position += 1;
                let table = self.lua.create_table()?;
                self.skip_space();
                if self.input.get(self.position) == Some(&b']') {
                    self.position += 1;
                    return Ok(Value::Table(table));
                }
                let mut index = 1;
                loop {
                    let item = self.value(depth + 1)?;
                    table.raw_set(index, item)?;
                    index += 1;
                    self.skip_space();
                    match self.input.get(self.position) {
                        Some(b',') => self.position += 1,
                        Some(b']') => {
                            self.position += 1;
                            return Ok(Value::Table(table));
                        }
                        _ => return self.error("comma or array end"),
                    }
                }
            }
            Some(b'"') => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Some(b't') if self.input[self.position..].starts_with(b"true") => {
                self.position += 4;
                Ok(Value::Boolean(true))
            }
            Some(b'f') if self.input[self.position..].starts_with(b"false") => {
                self.position += 5;
                Ok(Value::Boolean(false))
            }
            Some(b'n') if self.input[self.position..].starts_with(b"null") => {
                self.position += 4;
                Ok(null())
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.error("value"),
        }
    }

    fn number(&mut self) -> mlua::Result<Value> {
        let start = self.position;
        while self.input.get(self.position).is_some_and(|byte| {
            byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E')
        }) {
            self.position += 1;
        }
        let text = std::str::from_utf8(&self.input[start..self.position]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(value) => Ok(Value::Number(value)),
            Err(_) => {
                self.position = start;
                self.error("value")
            }
        }
    }

    fn hex4(&mut self) -> mlua::Result<u32> {
        let digits = self
            .input
            .get(self.position..self.position + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u32::from_str_radix(digits, 16).ok());
        match digits {
            Some(value) => {
                self.position += 4;
                Ok(value)
            }
            None => self.error("unicode escape"),
        }
    }

    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        self.position += 1;
        let mut out = Vec::new();
        loop {
            let Some(&byte) = self.input.get(self.position) else {
                return self.error("string end");
            };
            self.position += 1;
            match byte {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&escaped) = self.input.get(self.position) else {
                        return self.error("escape");
                    };
                    self.position += 1;
                    match escaped {
                        b'"' | b'\\' | b'/' => out.push(escaped),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xd800..0xdc00).contains(&code)
                                && self.input.get(self.position..self.position + 2) == Some(b"\\u")
                            {
                                self.position += 2;
                                let low = self.hex4()?;
                                code = 0x10000
                                    + ((code - 0xd800) << 10)
                                    + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            let character = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut buffer = [0u8; 4];
                            out.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
                        }
                        _ => {
                            self.position -= 2;
                            return self.error("valid escape");
                        }
                    }
                }
                _ => out.push(byte),
            }
        }
    }
}

/// Registers the `cjson` table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let cjson = lua.create_table()?;
    cjson.raw_set(
        "encode",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            if args.len() != 1 {
                return Err(args.error(1, "expected 1 argument"));
            }
            let mut out = Vec::new();
            encode_value(&mut out, args.get(1).unwrap_or(&Value::Nil), 0)
                .map_err(|failure| positioned(lua, failure))?;
            lua.create_string(out)
        })?,
    )?;
    cjson.raw_set(
        "decode",
        lua.create_function(|lua, values: MultiValue| {
            let args = Args::new(lua, values);
            if args.len() != 1 {
                return Err(args.error(1, "expected 1 argument"));
            }
            let text = args.string(1)?;
            let bytes = text.as_bytes();
            let mut decoder = Decoder {
                lua,
                input: &bytes,
                position: 0,
            };
            let decoded = decoder.value(0).and_then(|value| {
                decoder.skip_space();
                if decoder.position < bytes.len() {
                    return decoder.error("the end");
                }
                Ok(value)
            });
            decoded.map_err(|failure| positioned(lua, failure))
        })?,
    )?;
    cjson.raw_set("null", null())?;
    // Settings some scripts call: accepted, the defaults stay.
    for setting in [
        "encode_sparse_array",
        "encode_max_depth",
        "decode_max_depth",
        "encode_number_precision",
        "encode_keep_buffer",
        "encode_invalid_numbers",
        "decode_invalid_numbers",
    ] {
        cjson.raw_set(
            setting,
            lua.create_function(|_, _: mlua::MultiValue| Ok(()))?,
        )?;
    }
    globals.raw_set("cjson", cjson)
}
