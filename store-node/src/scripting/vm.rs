//! The Lua 5.1 interpreter as Redis sets it up: only the `string`, `table` and `math` standard
//! libraries plus `cjson`, `cmsgpack`, `bit` and `struct`; the `redis` API; and a sandbox in
//! which a script sees only Redis's allowed globals (no `os`, `io`, `debug`, `loadfile`,
//! `dofile`, `require`, `print`), cannot create or change a global (`Attempt to modify a
//! readonly table`), and reading an unknown one is an error (`Script attempted to access
//! nonexistent global variable`). Scripts are compiled once per body, named `@user_script` as
//! in Redis, so error positions read `user_script:<line>:`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};

use super::api::{self, error_text, Control, KILLED};
use super::libs;

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
const LIBRARIES: &[&str] = &[
    "string",
    "table",
    "math",
    "coroutine",
    "cjson",
    "cmsgpack",
    "bit",
    "struct",
    "redis",
];

/// Builds the sandbox: `allowed` holds the real values, the returned environment is an empty
/// table whose metatable reads through to them and refuses every assignment.
///
/// `pcall` and `xpcall` behave as in Redis 7: `pcall` answers an error's text (a failed
/// `redis.call`'s error reply, a library's message, an `{err=...}` table's `err`), an `xpcall`
/// handler receives a failed `redis.call` as its `{err=...}` table and `xpcall` answers what
/// the handler returned. Once `SCRIPT KILL` was asked, both raise the kill
/// again however the call ended, so a script cannot catch it and loop on (Redis gets the same
/// by raising it at every line from then on); so does `coroutine.resume`.
const SANDBOX: &str = r#"
local allowed, libraries, names, helpers = ...
local function readonly_error() error("Attempt to modify a readonly table", 2) end
local raw_pcall, raw_xpcall, raw_error, raw_type = pcall, xpcall, error, type
local message_of, killed, killed_text = helpers.message, helpers.killed, helpers.killed_text
local function caught(ok, ...)
  if killed() then raw_error(killed_text, 0) end
  if ok then return ok, ... end
  local e = ...
  if raw_type(e) == 'table' and raw_type(e.err) == 'string' then return false, e.err end
  if raw_type(e) == 'userdata' then
    local text = message_of(e)
    if text then return false, text end
  end
  return false, e
end
local function as_raised(e)
  if raw_type(e) == 'userdata' then
    local text, from_call = message_of(e)
    if from_call then return {err = text} end
    if text then return text end
  end
  return e
end
local view = {}
for _, name in ipairs(names) do view[name] = allowed[name] end
view.pcall = function(...) return caught(raw_pcall(...)) end
local function passed(...)
  if killed() then raw_error(killed_text, 0) end
  return ...
end
view.xpcall = function(f, handler)
  return passed(raw_xpcall(f, function(e) return handler(as_raised(e)) end))
end
local raw_resume = allowed.coroutine.resume
local overrides = {
  coroutine = {resume = function(...) return passed(raw_resume(...)) end},
}
for _, name in ipairs(libraries) do
  local contents = allowed[name]
  if overrides[name] then contents = setmetatable(overrides[name], {__index = contents}) end
  view[name] = setmetatable({}, {__index = contents, __newindex = readonly_error, __metatable = false})
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
        let implementation = lua.create_table()?;
        let redis = api::install(&lua, &control, &implementation)?;
        globals.raw_set("redis", redis)?;
        let names = lua.create_sequence_from(ALLOWED_GLOBALS.iter().copied())?;
        let libraries = lua.create_sequence_from(LIBRARIES.iter().copied())?;
        let env: Table = lua.load(SANDBOX).set_name("=sandbox").call((
            globals,
            libraries,
            names,
            api::sandbox_helpers(&lua, &control)?,
        ))?;
        let handler = lua.create_function(error_handler)?;
        let runner: Function = lua
            .load("local handler = ...; return function(f) return xpcall(f, handler) end")
            .set_name("=runner")
            .call(handler)?;
        // The global hook, not `set_hook`: coroutines a script creates inherit it, so a script
        // looping inside one can be killed too.
        lua.set_global_hook(
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
/// line}`; an error that is not already such a table gets the `ERR ` code. Running out of
/// memory in a library written in Rust leaves as Lua's own out-of-memory error does (Lua 5.1
/// calls no handler for it): the bare message, which the reply turns into `Error running
/// script <sha>, not enough memory`.
fn error_handler(lua: &Lua, error: Value) -> mlua::Result<Value> {
    if matches!(&error, Value::Error(error) if is_memory_error(error)) {
        // Lua interned this text when it started: no allocation, which would fail now.
        return Ok(Value::String(lua.create_string(MEMORY_ERROR)?));
    }
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
    Ok(Value::Table(table))
}

/// Lua's out-of-memory message (`MEMERRMSG`).
const MEMORY_ERROR: &str = "not enough memory";

/// Whether an error raised from Rust is an allocation that failed under the memory limit.
fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}
