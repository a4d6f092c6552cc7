//! Lua scripting (EVAL, EVALSHA, SCRIPT): one Lua 5.1 interpreter per node ([`vm`]), its
//! script cache, Redis's conversions ([`convert`]), the libraries scripts use ([`libs`]), and
//! the state other clients see while a script runs (busy past `busy-reply-threshold`,
//! `SCRIPT KILL`).
//!
//! A script's `redis.call` goes through a [`Dispatcher`], which the command layer implements
//! over the normal command path: the script's writes are ordinary writes (logged and
//! replicated as the records they produce, never as the script), so every node converges and
//! disc recovery never runs Lua. The caller holds the node's transaction gate exclusively
//! around [`ScriptEngine::run`], which makes the script atomic on its node. The cache is per
//! node and empty after a restart, as in Redis 7.

mod api;
pub mod convert;
pub mod libs;
pub mod sha;
pub mod shebang;
mod vm;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mlua::Value;
use parking_lot::Mutex;

use crate::protocol::{Frame, Protocol};
use api::Control;
pub use api::{KILLED, REDIS_VERSION};
pub use sha::sha1_hex;
pub use shebang::ScriptFlags;
use vm::Vm;

/// `NOSCRIPT No matching script. Please use EVAL.`
pub const NOSCRIPT: Frame = Frame::error("NOSCRIPT No matching script. Please use EVAL.");

/// What another client is told while a script runs past the busy threshold.
pub const BUSY: Frame = Frame::error(
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
);

/// Runs the commands a script calls.
pub trait Dispatcher {
    /// Runs one command (`args[0]` is its name) for the script and returns its reply; an
    /// error reply is a [`Frame::Error`].
    fn call(&mut self, args: Vec<Bytes>) -> Frame;
}

/// Scripting counters for `/metrics` and INFO.
#[derive(Debug, Default)]
pub struct ScriptMetrics {
    /// Scripts run (EVAL, EVALSHA and their `_RO` forms).
    pub runs: AtomicU64,
    /// Scripts that ended in an error reply.
    pub errors: AtomicU64,
    /// Scripts stopped by `SCRIPT KILL`.
    pub killed: AtomicU64,
    /// Total time spent running scripts, in microseconds.
    pub micros: AtomicU64,
}

/// The script running now.
#[derive(Debug)]
struct Running {
    started: Instant,
    /// The script called a write command: `SCRIPT KILL` would leave it half done.
    wrote: AtomicBool,
}

/// A script to run.
pub struct Script<'a> {
    /// Its body.
    pub body: &'a [u8],
    /// Its shebang's flags and the length of its shebang line ([`shebang::parse`]).
    pub shebang: (ScriptFlags, usize),
    /// Its SHA1, when the caller knows it.
    pub sha: Option<&'a str>,
    /// `KEYS`.
    pub keys: &'a [Bytes],
    /// `ARGV`.
    pub argv: &'a [Bytes],
    /// Bytes the interpreter may grow by during the run; `None` without a memory limit.
    pub memory_room: Option<usize>,
}

/// The node's scripting state.
#[derive(Debug)]
pub struct ScriptEngine {
    vm: Mutex<Option<VmSlot>>,
    /// Cached bodies by SHA1, with their flags.
    bodies: Mutex<HashMap<String, (Bytes, ScriptFlags)>>,
    running: Mutex<Option<Arc<Running>>>,
    control: Arc<Control>,
    busy_threshold_ms: AtomicU64,
    /// The counters.
    pub metrics: ScriptMetrics,
}

/// The interpreter, behind a type that only says it exists (mlua's types print nothing useful).
struct VmSlot(Vm);

impl std::fmt::Debug for VmSlot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Vm")
    }
}

impl Default for ScriptEngine {
    fn default() -> ScriptEngine {
        ScriptEngine::new()
    }
}

impl ScriptEngine {
    /// An engine with an empty cache; the interpreter starts on first use.
    pub fn new() -> ScriptEngine {
        ScriptEngine {
            vm: Mutex::new(None),
            bodies: Mutex::new(HashMap::new()),
            running: Mutex::new(None),
            control: Arc::new(Control::default()),
            busy_threshold_ms: AtomicU64::new(5000),
            metrics: ScriptMetrics::default(),
        }
    }

    fn with_vm<R>(&self, f: impl FnOnce(&mut Vm) -> R) -> Result<R, Frame> {
        let mut slot = self.vm.lock();
        if slot.is_none() {
            let vm = Vm::new(self.control.clone()).map_err(|error| {
                tracing::error!(%error, "the Lua interpreter could not start");
                Frame::Error(format!("ERR failed to start the Lua interpreter: {error}").into())
            })?;
            *slot = Some(VmSlot(vm));
        }
        match slot.as_mut() {
            Some(VmSlot(vm)) => Ok(f(vm)),
            None => Err(Frame::error("ERR the Lua interpreter is not available")),
        }
    }

    /// `SCRIPT LOAD`: compiles and caches a body; returns its SHA1 or the error (a malformed
    /// shebang line, a compile error).
    pub fn load(&self, body: &Bytes) -> Result<String, Frame> {
        let sha = sha1_hex(body);
        let (flags, shebang) = shebang::parse(body).map_err(|text| Frame::Error(text.into()))?;
        self.with_vm(|vm| vm.compile(&sha, &body[shebang..]))?
            .map_err(|text| Frame::Error(text.into()))?;
        self.bodies
            .lock()
            .insert(sha.clone(), (body.clone(), flags));
        Ok(sha)
    }

    /// The cached body of `sha` (lowercase or not) and its flags.
    pub fn body(&self, sha: &[u8]) -> Option<(Bytes, ScriptFlags)> {
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        self.bodies.lock().get(&sha).cloned()
    }

    /// `SCRIPT EXISTS`.
    pub fn exists(&self, sha: &[u8]) -> bool {
        self.body(sha).is_some()
    }

    /// `SCRIPT FLUSH`: empties the cache and starts a fresh interpreter.
    pub fn flush(&self) {
        self.bodies.lock().clear();
        *self.vm.lock() = None;
    }

    /// Scripts in the cache.
    pub fn cached(&self) -> usize {
        self.bodies.lock().len()
    }

    /// Bytes the interpreter uses (INFO `used_memory_lua`).
    pub fn used_memory(&self) -> usize {
        match self.vm.try_lock() {
            Some(slot) => slot.as_ref().map_or(0, |VmSlot(vm)| vm.lua.used_memory()),
            // A script is running: its memory is still being counted.
            None => 0,
        }
    }

    /// `busy-reply-threshold` in milliseconds.
    pub fn busy_threshold_ms(&self) -> u64 {
        self.busy_threshold_ms.load(Ordering::Relaxed)
    }

    /// Sets `busy-reply-threshold` (`lua-time-limit`).
    pub fn set_busy_threshold_ms(&self, milliseconds: u64) {
        self.busy_threshold_ms
            .store(milliseconds, Ordering::Relaxed);
    }

    /// Whether a script has run longer than the busy threshold: other clients get `BUSY`.
    pub fn busy(&self) -> bool {
        let threshold = self.busy_threshold_ms();
        self.running
            .lock()
            .as_ref()
            .is_some_and(|running| running.started.elapsed().as_millis() as u64 >= threshold)
    }

    /// Called before the running script's write command runs: marks the script as one that
    /// wrote (from now on `SCRIPT KILL` answers `UNKILLABLE`, as Redis marks it before the
    /// command runs, whatever its outcome), unless `SCRIPT KILL` came first: then `false`, and
    /// the write must not run, so a killed script never leaves half its writes behind.
    pub fn begin_write(&self) -> bool {
        let running = self.running.lock();
        if self.control.kill.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(running) = running.as_ref() {
            running.wrote.store(true, Ordering::Relaxed);
        }
        true
    }

    /// `SCRIPT KILL`.
    pub fn kill(&self) -> Frame {
        let running = self.running.lock();
        match running.as_ref() {
            None => Frame::error("NOTBUSY No scripts in execution right now."),
            Some(running) if running.wrote.load(Ordering::Relaxed) => Frame::error(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
            ),
            Some(_) => {
                self.control.kill.store(true, Ordering::Relaxed);
                Frame::ok()
            }
        }
    }

    /// Runs a script (the caller holds the transaction gate exclusively) and returns its reply
    /// converted for a client of `protocol`.
    pub fn run(&self, script: Script<'_>, dispatcher: &mut dyn Dispatcher) -> Frame {
        let sha = match script.sha {
            Some(sha) => sha.to_string(),
            None => sha1_hex(script.body),
        };
        let started = Instant::now();
        *self.running.lock() = Some(Arc::new(Running {
            started,
            wrote: AtomicBool::new(false),
        }));
        self.control.kill.store(false, Ordering::Relaxed);
        self.control.resp3.store(false, Ordering::Relaxed);
        let reply = self
            .with_vm(|vm| self.run_in(vm, &sha, &script, dispatcher))
            .unwrap_or_else(|error| error);
        let killed = self.control.kill.swap(false, Ordering::Relaxed);
        *self.running.lock() = None;
        if script.sha.is_none()
            && !matches!(&reply, Frame::Error(text) if text.starts_with("ERR Error compiling"))
        {
            self.bodies
                .lock()
                .insert(sha, (Bytes::copy_from_slice(script.body), script.shebang.0));
        }
        self.metrics.runs.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if reply.is_error() {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        }
        if killed {
            self.metrics.killed.fetch_add(1, Ordering::Relaxed);
        }
        reply
    }

    fn run_in(
        &self,
        vm: &mut Vm,
        sha: &str,
        script: &Script<'_>,
        dispatcher: &mut dyn Dispatcher,
    ) -> Frame {
        let function = match vm.compile(sha, &script.body[script.shebang.1..]) {
            Ok(function) => function,
            Err(text) => return Frame::Error(text.into()),
        };
        let lua = &vm.lua;
        let prepared = (|| -> mlua::Result<()> {
            for (name, values) in [("KEYS", script.keys), ("ARGV", script.argv)] {
                let table = lua.create_table_with_capacity(values.len(), 0)?;
                for (index, value) in values.iter().enumerate() {
                    table.raw_set(index + 1, lua.create_string(value)?)?;
                }
                vm.env.raw_set(name, table)?;
            }
            let limit = script
                .memory_room
                .map_or(0, |room| lua.used_memory().saturating_add(room.max(1)));
            lua.set_memory_limit(limit)?;
            Ok(())
        })();
        if let Err(error) = prepared {
            return Frame::Error(format!("ERR failed to prepare the script: {error}").into());
        }
        let control = &self.control;
        let outcome = lua.scope(|scope| {
            let call =
                scope.create_function_mut(|lua, ()| call_from_script(lua, control, dispatcher))?;
            vm.implementation.raw_set("call", call)?;
            let (ok, value): (bool, Value) = vm.runner.call(function)?;
            vm.implementation.raw_set("call", Value::Nil)?;
            Ok(if ok {
                convert::lua_to_frame(&value, control.resp3.load(Ordering::Relaxed))
            } else {
                script_error(&value, sha)
            })
        });
        // Unlimited between runs, so the interpreter's own upkeep never fails.
        let _ = lua.set_memory_limit(0);
        let reply = outcome.unwrap_or_else(|error| match error {
            // Out of memory outside the script's own code (setting up its call): the text
            // Lua's own out-of-memory error gets.
            mlua::Error::MemoryError(_) => {
                Frame::Error(format!("ERR Error running script {sha}, not enough memory").into())
            }
            other => Frame::Error(format!("ERR {other} script: {sha}").into()),
        });
        // A script's garbage should not wait for the next script to be collected.
        let _ = lua.gc_collect();
        reply
    }
}

/// `redis.call`'s work: the command [`api::invoke`] left in the app data, through the
/// dispatcher; its reply as Lua values `reply, failed`.
fn call_from_script(
    lua: &mlua::Lua,
    control: &Control,
    dispatcher: &mut dyn Dispatcher,
) -> mlua::Result<(Value, bool)> {
    let Some(api::PendingCall(command)) = lua.remove_app_data::<api::PendingCall>() else {
        return Ok((convert::error_table(lua, "ERR unknown error")?, true));
    };
    let reply = dispatcher.call(command);
    let failed = reply.is_error();
    let protocol = if control.resp3.load(Ordering::Relaxed) {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    Ok((convert::frame_to_lua(lua, reply, protocol)?, failed))
}

/// The reply of a script that raised an error: `<err> script: <sha>, on <source>:<line>.`
fn script_error(value: &Value, sha: &str) -> Frame {
    let Value::Table(table) = value else {
        let text = match value {
            Value::String(text) => text.to_string_lossy(),
            _ => "execution failure".to_string(),
        };
        return Frame::Error(format!("ERR Error running script {sha}, {text}").into());
    };
    let text = match table.raw_get::<Value>("err") {
        Ok(Value::String(text)) => text.to_string_lossy(),
        _ => "ERR unknown error".to_string(),
    };
    let source = table.raw_get::<Option<String>>("source").ok().flatten();
    let line = table.raw_get::<Option<i64>>("line").ok().flatten();
    match (source, line) {
        (Some(source), Some(line)) => {
            Frame::Error(format!("{text} script: {sha}, on {source}:{line}.").into())
        }
        _ => Frame::Error(text.into()),
    }
}
