//! `cjson`: the JSON library Redis bundles (lua-cjson 2.1), implemented over mlua with its
//! observable behaviour: `cjson.encode` writes numbers with `%.14g` (`encode_number_precision`),
//! escapes `/`, encodes a table whose keys are all positive integers as an array (missing
//! items as `null`; an excessively sparse one is refused or, with `encode_sparse_array(true)`,
//! an object), any other table as an object, an empty table as `{}`, and `cjson.null` as
//! `null`; NaN and Inf are refused unless `encode_invalid_numbers` allows them. `cjson.decode`
//! is [`super::cjson_decode`]. The settings (`encode_max_depth`, `decode_max_depth`,
//! `encode_sparse_array`, `encode_number_precision`, `encode_invalid_numbers`,
//! `decode_invalid_numbers`, `encode_keep_buffer`) answer and change as lua-cjson's do and,
//! as in Redis, last for the interpreter's life.

use std::sync::Arc;

use mlua::{LightUserData, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;

use super::args::{positioned, Args};
use super::cjson_decode::{decode, DecodeSettings};
use super::format_g;

/// lua-cjson's settings (`json_config_t`), with its defaults.
#[derive(Debug, Clone, Copy)]
struct Settings {
    sparse_convert: bool,
    sparse_ratio: i64,
    sparse_safe: i64,
    encode_max_depth: i64,
    decode_max_depth: i64,
    /// 0 off, 1 on, 2 `"null"`.
    encode_invalid_numbers: u8,
    decode_invalid_numbers: bool,
    keep_buffer: bool,
    precision: i64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            keep_buffer: true,
            precision: 14,
        }
    }
}

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

fn encode_number(out: &mut Vec<u8>, value: f64, settings: &Settings) -> mlua::Result<()> {
    if !value.is_finite() {
        match settings.encode_invalid_numbers {
            0 => {
                return Err(mlua::Error::runtime(
                    "Cannot serialise number: must not be NaN or Inf",
                ))
            }
            // lua-cjson writes NaN itself: some C libraries print "-nan".
            1 if value.is_nan() => {
                out.extend_from_slice(b"nan");
                return Ok(());
            }
            1 => {}
            _ => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
        }
    }
    out.extend_from_slice(format_g(value, settings.precision as i32).as_bytes());
    Ok(())
}

/// The array length of a table whose keys are all positive integers, `None` for an object
/// (also for an excessively sparse array when `encode_sparse_array` converts those).
fn array_length(table: &Table, settings: &Settings) -> mlua::Result<Option<usize>> {
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
    if settings.sparse_ratio > 0
        && max as i64 > items as i64 * settings.sparse_ratio
        && max as i64 > settings.sparse_safe
    {
        if !settings.sparse_convert {
            return Err(mlua::Error::runtime(
                "Cannot serialise table: excessively sparse array",
            ));
        }
        return Ok(None);
    }
    if items == 0 {
        return Ok(None);
    }
    Ok(Some(max))
}

/// Encodes `value` (`depth` tables deep) after `out`.
fn encode_value(
    out: &mut Vec<u8>,
    value: &Value,
    depth: i64,
    settings: &Settings,
) -> mlua::Result<()> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(data) if data.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        Value::Integer(value) => encode_number(out, *value as f64, settings)?,
        Value::Number(value) => encode_number(out, *value, settings)?,
        Value::String(text) => escape(out, &text.as_bytes()),
        Value::Table(table) => {
            let depth = depth + 1;
            if depth > settings.encode_max_depth {
                return Err(mlua::Error::runtime(format!(
                    "Cannot serialise, excessive nesting ({depth})"
                )));
            }
            match array_length(table, settings)? {
                Some(length) => {
                    out.push(b'[');
                    for index in 1..=length {
                        if index > 1 {
                            out.push(b',');
                        }
                        encode_value(out, &table.raw_get::<Value>(index)?, depth, settings)?;
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
                                encode_value(&mut number, &key, depth, settings)?;
                                escape(out, &number);
                            }
                            _ => {
                                return Err(mlua::Error::runtime(
                                    "Cannot serialise table: table key must be a number or string",
                                ))
                            }
                        }
                        out.push(b':');
                        encode_value(out, &item, depth, settings)?;
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

/// The settings every `cjson` function shares.
type Shared = Arc<Mutex<Settings>>;

/// `json_arg_init`: at most `count` arguments.
fn at_most(args: &Args<'_>, count: usize) -> mlua::Result<()> {
    if args.len() > count {
        return Err(args.error(count + 1, "found too many arguments"));
    }
    Ok(())
}

/// `json_integer_option`: argument `index`, when given, must lie in `min..=max` (the error
/// names argument 1 whichever it is, as lua-cjson's does).
fn integer_option(
    args: &Args<'_>,
    index: usize,
    setting: &mut i64,
    min: i64,
    max: i64,
) -> mlua::Result<Value> {
    if !matches!(args.get(index), None | Some(Value::Nil)) {
        let value = args.integer(index)?;
        if !(min..=max).contains(&value) {
            return Err(args.error(1, &format!("expected integer between {min} and {max}")));
        }
        *setting = value;
    }
    Ok(Value::Number(*setting as f64))
}

/// `json_enum_option`: a boolean, or one of `options` by name (`off`, `on`, ...); answers the
/// setting as a boolean for 0 and 1, by name otherwise.
fn enum_option(
    lua: &Lua,
    args: &Args<'_>,
    setting: &mut u8,
    options: &[&str],
) -> mlua::Result<Value> {
    match args.get(1) {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(value)) => *setting = u8::from(*value),
        Some(_) => {
            let name = args.string(1)?;
            let name = name.to_string_lossy();
            let Some(position) = options.iter().position(|option| *option == name) else {
                return Err(args.error(1, &format!("invalid option '{name}'")));
            };
            *setting = position as u8;
        }
    }
    Ok(match *setting {
        0 | 1 => Value::Boolean(*setting == 1),
        other => Value::String(lua.create_string(options[usize::from(other)])?),
    })
}

const BOOLEAN: &[&str] = &["off", "on"];

/// A settings function of `cjson`: `body` gets the arguments and the settings.
fn setting(
    lua: &Lua,
    shared: &Shared,
    body: fn(&Lua, &Args<'_>, &mut Settings) -> mlua::Result<MultiValue>,
) -> mlua::Result<mlua::Function> {
    let shared = shared.clone();
    lua.create_function(move |lua, values: MultiValue| {
        let args = Args::new(lua, values);
        let mut settings = shared.lock();
        body(lua, &args, &mut settings)
    })
}

fn one(value: Value) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_iter([value]))
}

/// Registers the `cjson` table.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let shared: Shared = Arc::new(Mutex::new(Settings::default()));
    let cjson = lua.create_table()?;
    let encoding = shared.clone();
    cjson.raw_set(
        "encode",
        lua.create_function(move |lua, values: MultiValue| {
            let args = Args::new(lua, values);
            if args.len() != 1 {
                return Err(args.error(1, "expected 1 argument"));
            }
            let settings = *encoding.lock();
            let mut out = Vec::new();
            encode_value(&mut out, args.get(1).unwrap_or(&Value::Nil), 0, &settings)
                .map_err(|failure| positioned(lua, failure))?;
            lua.create_string(out)
        })?,
    )?;
    let decoding = shared.clone();
    cjson.raw_set(
        "decode",
        lua.create_function(move |lua, values: MultiValue| {
            let args = Args::new(lua, values);
            if args.len() != 1 {
                return Err(args.error(1, "expected 1 argument"));
            }
            let text = args.string(1)?;
            let settings = *decoding.lock();
            let settings = DecodeSettings {
                max_depth: settings.decode_max_depth,
                invalid_numbers: settings.decode_invalid_numbers,
            };
            decode(lua, &text.as_bytes(), settings).map_err(|failure| positioned(lua, failure))
        })?,
    )?;
    cjson.raw_set(
        "encode_sparse_array",
        setting(lua, &shared, |lua, args, settings| {
            at_most(args, 3)?;
            let mut convert = u8::from(settings.sparse_convert);
            let convert_value = enum_option(lua, args, &mut convert, BOOLEAN)?;
            settings.sparse_convert = convert == 1;
            let ratio =
                integer_option(args, 2, &mut settings.sparse_ratio, 0, i64::from(i32::MAX))?;
            let safe = integer_option(args, 3, &mut settings.sparse_safe, 0, i64::from(i32::MAX))?;
            Ok(MultiValue::from_iter([convert_value, ratio, safe]))
        })?,
    )?;
    cjson.raw_set(
        "encode_max_depth",
        setting(lua, &shared, |_, args, settings| {
            at_most(args, 1)?;
            one(integer_option(
                args,
                1,
                &mut settings.encode_max_depth,
                1,
                i64::from(i32::MAX),
            )?)
        })?,
    )?;
    cjson.raw_set(
        "decode_max_depth",
        setting(lua, &shared, |_, args, settings| {
            at_most(args, 1)?;
            one(integer_option(
                args,
                1,
                &mut settings.decode_max_depth,
                1,
                i64::from(i32::MAX),
            )?)
        })?,
    )?;
    cjson.raw_set(
        "encode_number_precision",
        setting(lua, &shared, |_, args, settings| {
            at_most(args, 1)?;
            one(integer_option(args, 1, &mut settings.precision, 1, 14)?)
        })?,
    )?;
    cjson.raw_set(
        "encode_keep_buffer",
        setting(lua, &shared, |lua, args, settings| {
            at_most(args, 1)?;
            let mut keep = u8::from(settings.keep_buffer);
            let answer = enum_option(lua, args, &mut keep, BOOLEAN)?;
            settings.keep_buffer = keep == 1;
            one(answer)
        })?,
    )?;
    cjson.raw_set(
        "encode_invalid_numbers",
        setting(lua, &shared, |lua, args, settings| {
            at_most(args, 1)?;
            one(enum_option(
                lua,
                args,
                &mut settings.encode_invalid_numbers,
                &["off", "on", "null"],
            )?)
        })?,
    )?;
    cjson.raw_set(
        "decode_invalid_numbers",
        setting(lua, &shared, |lua, args, settings| {
            at_most(args, 1)?;
            let mut allow = u8::from(settings.decode_invalid_numbers);
            let answer = enum_option(lua, args, &mut allow, BOOLEAN)?;
            settings.decode_invalid_numbers = allow == 1;
            one(answer)
        })?,
    )?;
    cjson.raw_set("null", null())?;
    cjson.raw_set("_NAME", "cjson")?;
    cjson.raw_set("_VERSION", "2.1.0")?;
    globals.raw_set("cjson", cjson)
}
