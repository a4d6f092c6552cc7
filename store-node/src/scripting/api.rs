//! The `redis` table scripts call (`redis.call`, `redis.pcall`, `redis.sha1hex`, `redis.log`,
//! `redis.setresp`, `redis.error_reply`, `redis.status_reply` and Redis's constants), and how
//! an error raised from Rust reads to a script and in the reply: a failed `redis.call`, or a
//! misused `redis` function, raises a Redis error reply (`ERR ...`, `WRONGTYPE ...`) that
//! `pcall` answers as is; a library raises a message that `pcall` answers as is and the reply
//! prefixes with `ERR `.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::convert;
use super::sha::sha1_hex;

/// The Redis version scripts see in `redis.REDIS_VERSION`.
pub const REDIS_VERSION: &str = "7.2.4";

/// What a script's own Lua functions (`redis.setresp`, the kill hook) share with the engine.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Set by `SCRIPT KILL`: the next hook call stops the script.
    pub(crate) kill: AtomicBool,
    /// `redis.setresp(3)` was called: replies convert with RESP3 types.
    pub(crate) resp3: AtomicBool,
}

/// The text a killed script ends with (the error handler adds `ERR `).
pub const KILLED: &str = "Script killed by user with SCRIPT KILL...";

/// `redis.error_reply` (which gives its text Redis's error code form) and
/// `redis.status_reply` (misused, both return an error reply rather than raise, as Redis's
/// do), and what Redis 7 keeps for
/// older scripts (`redis.set_repl`, `redis.replicate_commands`: effects are always what
/// replicates here, as in Redis 7).
const REDIS_API: &str = r#"
local redis, impl = ...
local type, select, sub, find, gsub = type, select, string.sub, string.find, string.gsub
local misused = "ERR wrong number or type of arguments"
redis.error_reply = function(...)
  local text = ...
  if select('#', ...) ~= 1 or type(text) ~= 'string' then return {err = misused} end
  -- luaPushErrorBuff: '-CODE message' keeps its code, any other text gets ERR.
  if sub(text, 1, 1) ~= '-' then text = '-' .. text end
  local space = find(text, ' ', 1, true)
  local code, message = 'ERR', sub(text, 2)
  if space then code, message = sub(text, 2, space - 1), sub(text, space + 1) end
  message = gsub(message, '^[\r\n]+', '')
  message = gsub(message, '[\r\n]+$', '')
  return {err = code .. ' ' .. message}
end
redis.status_reply = function(...)
  local text = ...
  if select('#', ...) ~= 1 or type(text) ~= 'string' then return {err = misused} end
  return {ok = text}
end
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
"#;

/// The error a failed `redis.call` or a misused `redis` function raises: its text is already
/// a Redis error reply.
#[derive(Debug)]
pub(crate) struct CallError(pub(crate) String);

impl std::fmt::Display for CallError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for CallError {}

/// What a misused `redis` function raises (Redis's `luaPushError`, which adds `ERR `).
fn api_error(text: &str) -> mlua::Error {
    mlua::Error::external(CallError(format!("ERR {text}")))
}

/// The message of an error raised from Rust, without mlua's decoration, and whether it is a
/// Redis error reply already (`None` for errors that are no message: Lua's own values).
pub(crate) fn message_of(error: &mlua::Error) -> Option<(String, bool)> {
    match error {
        mlua::Error::RuntimeError(text) => Some((text.clone(), false)),
        mlua::Error::CallbackError { cause, .. } => message_of(cause),
        mlua::Error::MemoryError(_) => Some(("not enough memory".to_string(), false)),
        mlua::Error::ExternalError(external) => Some(match external.downcast_ref::<CallError>() {
            Some(CallError(text)) => (text.clone(), true),
            None => (external.to_string(), false),
        }),
        other => Some((other.to_string(), false)),
    }
}

/// The error reply text of an error raised from Rust: a Redis error as it is, any other
/// message with the `ERR ` code.
pub(crate) fn error_text(error: &mlua::Error) -> String {
    match message_of(error) {
        Some((text, true)) => text,
        Some((text, false)) => format!("ERR {text}"),
        None => "ERR unknown error".to_string(),
    }
}

/// The functions the sandbox's `pcall` and `xpcall` use: `message(e)` (an error's text and
/// whether it is a Redis error), `killed()` (`SCRIPT KILL` was asked) and `killed_text`.
pub(crate) fn sandbox_helpers(lua: &Lua, control: &std::sync::Arc<Control>) -> mlua::Result<Table> {
    let helpers = lua.create_table()?;
    helpers.raw_set(
        "message",
        lua.create_function(|_, error: Value| {
            let message = match error {
                Value::Error(error) => message_of(&error),
                _ => None,
            };
            Ok(match message {
                Some((text, from_call)) => (Some(text), from_call),
                None => (None, false),
            })
        })?,
    )?;
    let kill = control.clone();
    helpers.raw_set(
        "killed",
        lua.create_function(move |_, ()| Ok(kill.kill.load(Ordering::Relaxed)))?,
    )?;
    helpers.raw_set("killed_text", KILLED)?;
    Ok(helpers)
}

/// The command one `redis.call` or `redis.pcall` asks for, handed to the per-run
/// `implementation.call` through the interpreter's app data rather than as arguments: a
/// command of thousands of arguments (`unpack` of a big table) fits the stack once, not twice.
pub(crate) struct PendingCall(pub(crate) Vec<Bytes>);

/// A `redis.call` argument list as a command, or the error reply Redis gives for it.
fn command_of(args: MultiValue) -> Result<Vec<Bytes>, &'static str> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call");
    }
    let mut command = Vec::with_capacity(args.len());
    for arg in args {
        command.push(match arg {
            Value::String(text) => Bytes::copy_from_slice(&text.as_bytes()),
            Value::Integer(value) => Bytes::from(convert::number_argument(value as f64)),
            Value::Number(value) => Bytes::from(convert::number_argument(value)),
            _ => return Err("ERR Lua redis lib command arguments must be strings or integers"),
        });
    }
    Ok(command)
}

/// Runs one command for the script: its reply as a Lua value, and whether it is an error.
fn invoke(lua: &Lua, call_slot: &Table, args: MultiValue) -> mlua::Result<(Value, bool)> {
    match command_of(args) {
        Ok(command) => {
            lua.set_app_data(PendingCall(command));
            let call: Function = call_slot.raw_get("call")?;
            call.call::<(Value, bool)>(())
        }
        Err(text) => Ok((convert::error_table(lua, text)?, true)),
    }
}

/// The text of `redis.log`'s arguments after the level, joined by spaces as Redis does.
fn log_text(parts: &[Value]) -> String {
    let text: Vec<String> = parts
        .iter()
        .map(|part| match part {
            Value::String(text) => text.to_string_lossy(),
            other => other.to_string().unwrap_or_default(),
        })
        .collect();
    text.join(" ")
}

/// Builds the `redis` table; `implementation.call` is set per run to the function that runs
/// a command for the script.
pub(crate) fn install(
    lua: &Lua,
    control: &std::sync::Arc<Control>,
    implementation: &Table,
) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    redis.raw_set("REDIS_VERSION", REDIS_VERSION)?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(api_error("wrong number of arguments"));
            }
            let text = args
                .into_iter()
                .next()
                .and_then(|value| lua.coerce_string(value).ok().flatten());
            let hex = match text {
                Some(text) => sha1_hex(&text.as_bytes()),
                None => sha1_hex(b""),
            };
            lua.create_string(hex)
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|lua, args: MultiValue| {
            let args: Vec<Value> = args.into_iter().collect();
            if args.len() < 2 {
                return Err(api_error("redis.log() requires two arguments or more."));
            }
            let level = match &args[0] {
                Value::Integer(level) => Some(*level),
                Value::Number(level) => Some(*level as i64),
                text @ Value::String(_) => lua.coerce_number(text.clone())?.map(|n| n as i64),
                _ => None,
            };
            let Some(level) = level else {
                return Err(api_error("First argument must be a number (log level)."));
            };
            let text = log_text(&args[1..]);
            match level {
                0 => tracing::debug!(target: "store_node::script", "{text}"),
                1 | 2 => tracing::info!(target: "store_node::script", "{text}"),
                3 => tracing::warn!(target: "store_node::script", "{text}"),
                _ => return Err(api_error("Invalid debug level.")),
            }
            Ok(())
        })?,
    )?;
    let setresp_control = control.clone();
    redis.raw_set(
        "setresp",
        lua.create_function(move |_, args: MultiValue| {
            if args.len() != 1 {
                return Err(api_error("redis.setresp() requires one argument."));
            }
            let version = match args.into_iter().next() {
                Some(Value::Integer(version)) => version,
                Some(Value::Number(version)) => version as i64,
                _ => 0,
            };
            match version {
                2 | 3 => {
                    setresp_control.resp3.store(version == 3, Ordering::Relaxed);
                    Ok(())
                }
                _ => Err(api_error("RESP version must be 2 or 3.")),
            }
        })?,
    )?;
    // Rust functions, not Lua: `return redis.call(...)` must not be a tail call that drops
    // the script's frame, whose line the error reply names.
    let call_slot = implementation.clone();
    redis.raw_set(
        "call",
        lua.create_function(move |lua, args: MultiValue| {
            let (reply, failed) = invoke(lua, &call_slot, args)?;
            if failed {
                let text = match &reply {
                    Value::Table(table) => table.raw_get::<String>("err")?,
                    _ => "ERR unknown error".to_string(),
                };
                return Err(mlua::Error::external(CallError(text)));
            }
            Ok(reply)
        })?,
    )?;
    let call_slot = implementation.clone();
    redis.raw_set(
        "pcall",
        lua.create_function(move |lua, args: MultiValue| Ok(invoke(lua, &call_slot, args)?.0))?,
    )?;
    lua.load(REDIS_API)
        .set_name("=redis_api")
        .call::<()>((redis.clone(), implementation.clone()))?;
    Ok(redis)
}
