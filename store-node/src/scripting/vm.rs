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

/// Builds the sandbox in the interpreter's own global table, as Redis does: the allowed values
/// move into a view, the global table is emptied and reads through to the view, so every
/// script and every chunk a script loads (`loadstring`, `load`, `getfenv(0)` all reach the
/// global table) sees only what Redis allows; assigning a global, `rawset` or `setmetatable`
/// on it or on a library, or changing what `getmetatable` gives for them, raises `Attempt to
/// modify a readonly table`. Strings' methods are the same read-only `string` library.
/// `loadstring` and `load` refuse precompiled chunks, as Redis's Lua parses every chunk as
/// text (a malformed one could crash Lua 5.1).
///
/// `pcall` and `xpcall` behave as in Redis 7: `pcall` answers an error's text (a failed
/// `redis.call`'s error reply, a library's message, an `{err=...}` table's `err`), an `xpcall`
/// handler receives a failed `redis.call` as its `{err=...}` table and `xpcall` answers what
/// the handler returned. Once `SCRIPT KILL` was asked, both raise the kill
/// again however the call ended, so a script cannot catch it and loop on (Redis gets the same
/// by raising it at every line from then on); so does `coroutine.resume`.
const SANDBOX: &str = r#"
local G, libraries, names, helpers = ...
local raw_pcall, raw_xpcall, raw_error, raw_type, raw_tostring = pcall, xpcall, error, type, tostring
local raw_rawset, raw_setmetatable, raw_getmetatable = rawset, setmetatable, getmetatable
local raw_setfenv, raw_loadstring, raw_load, raw_next, raw_ipairs = setfenv, loadstring, load, next, ipairs
local string_byte, string_sub, string_find = string.byte, string.sub, string.find
local message_of, killed, killed_text = helpers.message, helpers.killed, helpers.killed_text
local protected = raw_setmetatable({}, {__mode = 'k'})
-- An assignment the VM refuses names the script's line; a refusing function names none, as
-- Redis's C functions raise it.
local function readonly_error() raw_error("Attempt to modify a readonly table", 2) end
local function refuse() raw_error("Attempt to modify a readonly table", 0) end
local function guard(meta)
  local view = raw_setmetatable({}, {__index = meta, __newindex = readonly_error, __metatable = false})
  protected[view] = true
  meta.__metatable = view
end
local function readonly(contents)
  local meta = {__index = contents, __newindex = readonly_error}
  guard(meta)
  local view = raw_setmetatable({}, meta)
  protected[view] = true
  return view
end
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
local function passed(...)
  if killed() then raw_error(killed_text, 0) end
  return ...
end
-- luaO_chunkid: how Lua names a chunk in its messages.
local function chunk_id(name)
  if string_sub(name, 1, 1) == '=' then return string_sub(name, 2, 60) end
  if string_sub(name, 1, 1) == '@' then
    name = string_sub(name, 2)
    if #name > 52 then return '...' .. string_sub(name, -52) end
    return name
  end
  local text = name
  local nul = string_find(text, '\0', 1, true)
  if nul then text = string_sub(text, 1, nul - 1) end
  local line_end = string_find(text, '[\n\r]')
  local length = line_end and line_end - 1 or #text
  if length > 43 then length = 43 end
  if length < #text then return '[string "' .. string_sub(text, 1, length) .. '..."]' end
  return '[string "' .. text .. '"]'
end
local function binary_refused(name)
  return nil, chunk_id(name) .. ":1: unexpected symbol near 'char(27)'"
end
local view = {}
for _, name in raw_ipairs(names) do view[name] = G[name] end
view.pcall = function(...) return caught(raw_pcall(...)) end
view.xpcall = function(f, handler)
  return passed(raw_xpcall(f, function(e) return handler(as_raised(e)) end))
end
view.rawset = function(t, ...)
  if protected[t] then refuse() end
  return raw_rawset(t, ...)
end
view.setmetatable = function(t, ...)
  if protected[t] then refuse() end
  return raw_setmetatable(t, ...)
end
view.setfenv = function(target, ...)
  -- Level 0 is the interpreter's global table, which every later script shares.
  if target == 0 then refuse() end
  return raw_setfenv(target, ...)
end
view.loadstring = function(text, name)
  if raw_type(text) == 'string' and string_byte(text, 1) == 27 then
    return binary_refused(name or text)
  end
  return raw_loadstring(text, name)
end
view.load = function(reader, name)
  local first, refused = true, false
  local function pieces()
    local piece = reader()
    if first then
      first = false
      if raw_type(piece) == 'string' and string_byte(piece, 1) == 27 then
        refused = true
        return nil
      end
    end
    return piece
  end
  local chunk, message = raw_load(pieces, name)
  if refused then return binary_refused(name or '=(load)') end
  return chunk, message
end
local raw_resume = G.coroutine.resume
local overrides = {
  coroutine = {resume = function(...) return passed(raw_resume(...)) end},
}
for _, name in raw_ipairs(libraries) do
  local contents = G[name]
  if overrides[name] then contents = raw_setmetatable(overrides[name], {__index = contents}) end
  view[name] = readonly(contents)
end
local keys = {}
for key in raw_next, G do keys[#keys + 1] = key end
for _, key in raw_ipairs(keys) do raw_rawset(G, key, nil) end
view._G = G
local meta = {
  __index = function(_, key)
    local value = view[key]
    if value == nil then
      raw_error("Script attempted to access nonexistent global variable '" .. raw_tostring(key) .. "'", 2)
    end
    return value
  end,
  __newindex = readonly_error,
}
guard(meta)
raw_setmetatable(G, meta)
protected[G] = true
local string_meta = raw_getmetatable('')
string_meta.__index = view.string
guard(string_meta)
return G
"#;

/// One Lua interpreter with its sandbox and compiled scripts.
pub(crate) struct Vm {
    pub(crate) lua: Lua,
    /// The environment every script runs in, the interpreter's global table once sandboxed
    /// (`KEYS` and `ARGV` are set in it per run).
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
        // Before the sandbox: the runner uses Lua's own xpcall, not the script's.
        let handler = lua.create_function(error_handler)?;
        let runner: Function = lua
            .load("local handler, xpcall = ...; return function(f) return xpcall(f, handler) end")
            .set_name("=runner")
            .call((handler, globals.raw_get::<Function>("xpcall")?))?;
        let names = lua.create_sequence_from(ALLOWED_GLOBALS.iter().copied())?;
        let libraries = lua.create_sequence_from(LIBRARIES.iter().copied())?;
        let env: Table = lua.load(SANDBOX).set_name("=sandbox").call((
            globals,
            libraries,
            names,
            api::sandbox_helpers(&lua, &control)?,
        ))?;
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

/// Chunks of the interpreter's own whose frames an error position skips: to a script they
/// are the C functions they stand for in Redis.
const INTERNAL_CHUNKS: &[&str] = &["=sandbox", "=redis_api", "=runner"];

/// Where an error was raised, as Redis's error handler finds it: the innermost Lua function
/// below the one that raised it when that is a C function (`error`, a library), as
/// (`@user_script`, line), or the chunk a script loaded.
fn error_position(lua: &Lua) -> Option<(String, usize)> {
    for level in 1..32 {
        let frame = lua.inspect_stack(level, |debug| {
            let source = debug.source();
            (
                source.what,
                source.source.map(|name| name.into_owned()),
                debug.current_line(),
            )
        })?;
        match frame {
            // C functions, and what a tail call left of the frames it replaced.
            ("C" | "tail", _, _) => continue,
            (_, Some(source), _) if INTERNAL_CHUNKS.contains(&source.as_str()) => continue,
            (_, Some(source), Some(line)) => return Some((source, line)),
            _ => return None,
        }
    }
    None
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
    if let Some((source, line)) = error_position(lua) {
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
