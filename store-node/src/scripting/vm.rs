//! The Lua 5.1 interpreter as Redis sets it up: only the `string`, `table` and `math` standard
//! libraries plus `cjson`, `cmsgpack`, `bit` and `struct`; the `redis` API; and a sandbox in
//! which a script sees only Redis's allowed globals (no `os`, `io`, `debug`, `loadfile`,
//! `dofile`, `require`, `print`), cannot create or change a global (`Attempt to modify a
//! readonly table`), and reading an unknown one is an error (`Script attempted to access
//! nonexistent global variable`). Scripts are compiled once per body, named `@user_script` as
//! in Redis, so error positions read `user_script:<line>:`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use super::libs;
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
pub(crate) const KILLED: &str = "Script killed by user with SCRIPT KILL...";

/// Instructions between two checks for `SCRIPT KILL` (as Redis's hook).
const HOOK_EVERY: u32 = 100_000;

/// Globals a script may read, as Redis 7's allow lists (`script_lua.c`).
const ALLOWED_GLOBALS: &[&str] = &[
    "xpcall",
    "tostring",
    "getfenv",
    "setmetatable",
    "next",
    "assert",
    "tonumber",
    "rawequal",
    "collectgarbage",
    "getmetatable",
    "rawset",
    "pcall",
    "coroutine",
    "type",
    "select",
    "unpack",
    "gcinfo",
    "pairs",
    "rawget",
    "loadstring",
    "ipairs",
    "_VERSION",
    "setfenv",
    "load",
    "error",
    "newproxy",
];

/// Library tables a script may read but not change.
const LIBRARIES: &[&str] = &["string", "table", "math", "cjson", "bit", "redis"];

/// Builds the sandbox: `allowed` holds the real values, the returned environment is an empty
/// table whose metatable reads through to them and refuses every assignment. `pcall` turns an
/// error table (`redis.call`'s) into its text, as Redis 7 does.
const SANDBOX: &str = r#"
local allowed, libraries, names = ...
local function readonly_error() error("Attempt to modify a readonly table", 2) end
local raw_pcall = pcall
local error_text = allowed.redis.__error_text
local function unwrap(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if type(e) == 'table' and type(e.err) == 'string' then return false, e.err end
  if type(e) == 'userdata' then
    local text = error_text(e)
    if text then return false, text end
  end
  return false, e
end
local view = {}
for _, name in ipairs(names) do view[name] = allowed[name] end
view.pcall = function(f, ...) return unwrap(raw_pcall(f, ...)) end
for _, name in ipairs(libraries) do
  view[name] = setmetatable({}, {__index = allowed[name], __newindex = readonly_error, __metatable = false})
end
local env = {}
view._G = env
setmetatable(env, {
  __index = function(_, key)
    local value = view[key]
    if value == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(key) .. "'", 2)
    end
    return value
  end,
  __newindex = readonly_error,
  __metatable = false,
})
return env
"#;

/// `redis.pcall` over the per-run `impl.call` (a function scoped to one run that answers
/// `reply, failed`), `redis.error_reply`, `redis.status_reply`.
const REDIS_API: &str = r#"
local redis, impl = ...
redis.pcall = function(...)
  local reply = impl.call(...)
  return reply
end
redis.error_reply = function(text)
  if type(text) ~= 'string' then error("wrong number or type of arguments", 2) end
  return {err = text}
end
redis.status_reply = function(text)
  if type(text) ~= 'string' then error("wrong number or type of arguments", 2) end
  return {ok = text}
end
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
"#;

/// One Lua interpreter with its sandbox and compiled scripts.
pub(crate) struct Vm {
    pub(crate) lua: Lua,
    /// The environment every script runs in (`KEYS` and `ARGV` are set in it per run).
    pub(crate) env: Table,
    /// Holds the per-run `call` function behind `redis.call`.
    pub(crate) implementation: Table,
    /// `xpcall` with the error handler that notes where the error happened.
    pub(crate) runner: Function,
    /// Compiled scripts by SHA1.
    pub(crate) functions: HashMap<String, Function>,
}

impl Vm {
    /// A fresh interpreter.
    pub(crate) fn new(control: Arc<Control>) -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let globals = lua.globals();
        libs::install(&lua, &globals)?;
        let redis = lua.create_table()?;
        let implementation = lua.create_table()?;
        redis.raw_set("REDIS_VERSION", REDIS_VERSION)?;
        redis.raw_set(
            "sha1hex",
            lua.create_function(|lua, text: mlua::LuaString| {
                lua.create_string(sha1_hex(&text.as_bytes()))
            })?,
        )?;
        redis.raw_set(
            "log",
            lua.create_function(|_, (level, parts): (i64, MultiValue)| {
                let text: Vec<String> = parts
                    .iter()
                    .map(|part| match part {
                        Value::String(text) => text.to_string_lossy(),
                        other => other.to_string().unwrap_or_default(),
                    })
                    .collect();
                let text = text.join(" ");
                match level {
                    0 => tracing::debug!(target: "store_node::script", "{text}"),
                    1 | 2 => tracing::info!(target: "store_node::script", "{text}"),
                    3 => tracing::warn!(target: "store_node::script", "{text}"),
                    _ => return Err(mlua::Error::runtime("Invalid debug level.")),
                }
                Ok(())
            })?,
        )?;
        let setresp_control = control.clone();
        redis.raw_set(
            "setresp",
            lua.create_function(move |_, version: Value| {
                let version = match version {
                    Value::Integer(version) => version,
                    Value::Number(version) => version as i64,
                    _ => 0,
                };
                match version {
                    2 | 3 => {
                        setresp_control.resp3.store(version == 3, Ordering::Relaxed);
                        Ok(())
                    }
                    _ => Err(mlua::Error::runtime("RESP version must be 2 or 3.")),
                }
            })?,
        )?;
        // A Rust function, not Lua: `return redis.call(...)` must not be a tail call that
        // drops the script's frame, whose line the error reply names.
        let call_slot = implementation.clone();
        redis.raw_set(
            "call",
            lua.create_function(move |_, args: MultiValue| {
                let call: Function = call_slot.raw_get("call")?;
                let (reply, failed): (Value, bool) = call.call(args)?;
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
        redis.raw_set(
            "__error_text",
            lua.create_function(|_, error: Value| {
                Ok(match error {
                    Value::Error(error) => Some(error_text(&error)),
                    _ => None,
                })
            })?,
        )?;
        lua.load(REDIS_API)
            .set_name("=redis_api")
            .call::<()>((redis.clone(), implementation.clone()))?;
        globals.raw_set("redis", redis)?;
        let names = lua.create_sequence_from(ALLOWED_GLOBALS.iter().copied())?;
        let libraries = lua.create_sequence_from(LIBRARIES.iter().copied())?;
        let env: Table = lua
            .load(SANDBOX)
            .set_name("=sandbox")
            .call((globals, libraries, names))?;
        let handler = lua.create_function(error_handler)?;
        let runner: Function = lua
            .load("local handler = ...; return function(f) return xpcall(f, handler) end")
            .set_name("=runner")
            .call(handler)?;
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| {
                if control.kill.load(Ordering::Relaxed) {
                    return Err(mlua::Error::runtime(KILLED));
                }
                Ok(VmState::Continue)
            },
        )?;
        Ok(Vm {
            lua,
            env,
            implementation,
            runner,
            functions: HashMap::new(),
        })
    }

    /// Compiles a script body (not run); `Err` is Redis's compile error text.
    pub(crate) fn compile(&mut self, sha: &str, body: &[u8]) -> Result<Function, String> {
        if let Some(function) = self.functions.get(sha) {
            return Ok(function.clone());
        }
        let function = self
            .lua
            .load(body)
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|error| {
                let message = match error {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                };
                format!("ERR Error compiling script (new function): {message}")
            })?;
        self.functions.insert(sha.to_string(), function.clone());
        Ok(function)
    }
}

/// The innermost frame of the script itself: (`@user_script`, line).
fn script_position(lua: &Lua) -> Option<(String, usize)> {
    (0..16).find_map(|level| {
        lua.inspect_stack(level, |debug| {
            let source = debug.source();
            let name = source.source?.into_owned();
            (name == "@user_script")
                .then(|| debug.current_line().map(|line| (name, line)))
                .flatten()
        })
        .flatten()
    })
}

/// Redis's `__redis__err__handler`: every error leaves the script as a table `{err, source,
/// line}`; an error that is not already such a table gets the `ERR ` code.
fn error_handler(lua: &Lua, error: Value) -> mlua::Result<Table> {
    let table = match error {
        Value::Table(table) if matches!(table.raw_get::<Value>("err"), Ok(Value::String(_))) => {
            table
        }
        other => {
            let text = match other {
                Value::String(text) => format!("ERR {}", text.to_string_lossy()),
                Value::Error(error) => error_text(&error),
                Value::Nil => "ERR nil".to_string(),
                other => format!("ERR {}", other.to_string().unwrap_or_default()),
            };
            let table = lua.create_table()?;
            table.raw_set("err", text)?;
            table
        }
    };
    if let Some((source, line)) = script_position(lua) {
        table.raw_set("source", source)?;
        table.raw_set("line", line)?;
    }
    Ok(table)
}

/// The error reply a failed `redis.call` raises: its text is already a Redis error.
#[derive(Debug)]
struct CallError(String);

impl std::fmt::Display for CallError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for CallError {}

/// The error reply text of an error raised from Rust (`redis.call`, a library, the hook),
/// without mlua's decoration: a failed command's own error, else `ERR <message>`.
fn error_text(error: &mlua::Error) -> String {
    match error {
        mlua::Error::RuntimeError(text) => format!("ERR {text}"),
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::MemoryError(_) => "ERR not enough memory".to_string(),
        mlua::Error::ExternalError(external) => match external.downcast_ref::<CallError>() {
            Some(CallError(text)) => text.clone(),
            None => format!("ERR {external}"),
        },
        other => format!("ERR {other}"),
    }
}
