//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD|EXISTS|FLUSH|KILL.
//! The interpreter is [`crate::scripting`]; this file parses the commands and gives a script
//! its `redis.call`: [`ScriptCalls`] runs each command through the normal command path, so a
//! script's writes are logged and replicated as the records they produce and their receipts
//! join the EVAL's own (the client waits for them like for any write).
//!
//! The connection runs a script off its thread holding the transaction gate exclusively (see
//! `net::connection`), so the script is atomic and other clients can be told `BUSY`.

use bytes::Bytes;

use super::flags::{NO_SCRIPT, SCRIPT, WRITE};
use super::NOT_INTEGER;
use super::{commands, is, lookup, parse_i64, run, text, Call, ClientState, CommandSpec, OOM};
use crate::node::NodeState;
use crate::protocol::Frame;
use crate::scripting::{shebang, Dispatcher, Script, ScriptFlags, NOSCRIPT};
use crate::store::WriteReceipt;

/// What the interpreter may grow by during a script even when memory is at or past the high
/// watermark: a script that only reads or deletes (a lock release) must keep working while
/// writes that grow memory are refused, as in Redis, and Lua needs a few KiB for any call.
/// Small beside the gap between the high watermark and the memory limit.
const MIN_SCRIPT_ROOM: usize = 1 << 20;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("eval", -3, NO_SCRIPT | SCRIPT, eval),
    spec!("evalsha", -3, NO_SCRIPT | SCRIPT, evalsha),
    spec!("eval_ro", -3, NO_SCRIPT | SCRIPT, eval_ro),
    spec!("evalsha_ro", -3, NO_SCRIPT | SCRIPT, evalsha_ro),
    spec!("script", -2, NO_SCRIPT, script),
];

/// A script's `redis.call`: one command at a time through the normal command path, for a
/// client of the script's own.
pub struct ScriptCalls<'a> {
    state: &'a NodeState,
    client: ClientState,
    read_only: bool,
    /// The receipts of the script's writes, merged.
    pub receipt: WriteReceipt,
}

impl Dispatcher for ScriptCalls<'_> {
    fn call(&mut self, args: Vec<Bytes>) -> Frame {
        let Some(index) = lookup(&args[0]) else {
            return Frame::error("ERR Unknown Redis command called from script");
        };
        let spec = commands()[index];
        let count = args.len() as i32;
        if (spec.arity > 0 && count != spec.arity) || (spec.arity < 0 && count < -spec.arity) {
            return Frame::error("ERR Wrong number of args calling Redis command from script");
        }
        // CLUSTER RESET is the one CLUSTER subcommand Redis refuses in scripts.
        let cluster_reset =
            spec.name == "cluster" && args.get(1).is_some_and(|sub| is(sub, "reset"));
        if spec.flags & NO_SCRIPT != 0 || cluster_reset {
            return Frame::error("ERR This Redis command is not allowed from script");
        }
        if spec.flags & WRITE != 0 && self.read_only {
            return Frame::error("ERR Write commands are not allowed from read-only scripts.");
        }
        if spec.flags & WRITE != 0 && !self.state.scripts.begin_write() {
            return Frame::Error(format!("ERR {}", crate::scripting::KILLED).into());
        }
        let executed = run(self.state, &mut self.client, index, &args);
        self.receipt.merge(executed.receipt);
        executed.reply
    }
}

/// Refuses, before it runs, a script whose shebang declares it may write (or needs memory)
/// when it cannot: while memory is full (without `allow-oom`), while the log cannot be
/// written, or from EVAL_RO/EVALSHA_RO, as Redis checks declared scripts up front.
fn refuse_declared(call: &Call<'_>, flags: ScriptFlags, read_only: bool) -> Option<Frame> {
    if !flags.declared {
        return None;
    }
    let state = call.state;
    if !(flags.allow_oom || flags.no_writes || state.engine.make_room()) {
        state
            .metrics
            .oom_rejections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Some(OOM);
    }
    if flags.no_writes {
        return None;
    }
    if let Err(error) = crate::node::disc::admit_write(state) {
        return Some(Frame::Error(error.to_string().into()));
    }
    read_only
        .then(|| Frame::error("ERR Can not execute a script with write flag using *_ro command."))
}

fn run_script(
    call: &mut Call<'_>,
    body: Bytes,
    sha: Option<String>,
    flags: Option<ScriptFlags>,
    read_only: bool,
) -> Frame {
    let args = call.args;
    let Some(count) = parse_i64(&args[2]) else {
        return NOT_INTEGER;
    };
    if count < 0 {
        return Frame::error("ERR Number of keys can't be negative");
    }
    let count = count as usize;
    if count > args.len() - 3 {
        return Frame::error("ERR Number of keys can't be greater than number of args");
    }
    let shebang = match flags {
        Some(flags) => (flags, shebang::parse(&body).map_or(0, |(_, length)| length)),
        None => match shebang::parse(&body) {
            Ok(parsed) => parsed,
            Err(text) => return Frame::Error(text.into()),
        },
    };
    if let Some(refusal) = refuse_declared(call, shebang.0, read_only) {
        return refusal;
    }
    let memory = call.state.engine.memory();
    let memory_room = (memory.limit_bytes > 0).then(|| {
        (memory
            .high_watermark_bytes
            .saturating_sub(memory.used_bytes) as usize)
            .max(MIN_SCRIPT_ROOM)
    });
    let mut client = ClientState::new(call.client.id, true, "lua".to_string());
    client.allow_oom = shebang.0.declared && shebang.0.allow_oom;
    let mut calls = ScriptCalls {
        state: call.state,
        client,
        read_only: read_only || shebang.0.no_writes,
        receipt: WriteReceipt::NONE,
    };
    let reply = call.state.scripts.run(
        Script {
            body: &body,
            shebang,
            sha: sha.as_deref(),
            keys: &args[3..3 + count],
            argv: &args[3 + count..],
            memory_room,
        },
        &mut calls,
    );
    call.state.metrics.flush(&mut calls.client.metrics);
    call.wrote(calls.receipt);
    reply
}

fn run_cached(call: &mut Call<'_>, read_only: bool) -> Frame {
    let sha = &call.args[1];
    let Some((body, flags)) = (sha.len() == 40)
        .then(|| call.state.scripts.body(sha))
        .flatten()
    else {
        return NOSCRIPT;
    };
    let sha = text(sha).to_ascii_lowercase();
    run_script(call, body, Some(sha), Some(flags), read_only)
}

/// EVAL script numkeys [key ...] [arg ...]
pub fn eval(call: &mut Call<'_>) -> Frame {
    let body = call.args[1].clone();
    run_script(call, body, None, None, false)
}

/// EVALSHA sha1 numkeys [key ...] [arg ...]
pub fn evalsha(call: &mut Call<'_>) -> Frame {
    run_cached(call, false)
}

/// EVAL_RO script numkeys [key ...] [arg ...]: write commands are refused.
pub fn eval_ro(call: &mut Call<'_>) -> Frame {
    let body = call.args[1].clone();
    run_script(call, body, None, None, true)
}

/// EVALSHA_RO sha1 numkeys [key ...] [arg ...]
pub fn evalsha_ro(call: &mut Call<'_>) -> Frame {
    run_cached(call, true)
}

/// SCRIPT LOAD|EXISTS|FLUSH|KILL
pub fn script(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let sub = &args[1];
    let scripts = &call.state.scripts;
    let arity = |name: &str| {
        Frame::Error(format!("ERR wrong number of arguments for 'script|{name}' command").into())
    };
    if is(sub, "load") {
        if args.len() != 3 {
            return arity("load");
        }
        match scripts.load(&args[2]) {
            Ok(sha) => Frame::Bulk(Bytes::from(sha)),
            Err(error) => error,
        }
    } else if is(sub, "exists") {
        if args.len() < 3 {
            return arity("exists");
        }
        Frame::Array(
            args[2..]
                .iter()
                .map(|sha| Frame::Integer(i64::from(scripts.exists(sha))))
                .collect(),
        )
    } else if is(sub, "flush") {
        match args.get(2) {
            None => {}
            Some(mode) if args.len() == 3 && (is(mode, "async") || is(mode, "sync")) => {}
            Some(_) => {
                return Frame::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
        }
        scripts.flush();
        Frame::ok()
    } else if is(sub, "kill") {
        if args.len() != 2 {
            return arity("kill");
        }
        scripts.kill()
    } else {
        Frame::Error(format!("ERR unknown subcommand '{}'. Try SCRIPT HELP.", text(sub)).into())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::execute;
    use super::super::testing::*;
    use crate::protocol::Frame;

    fn eval(h: &mut Harness, args: &[&str]) -> Frame {
        let args: Vec<Bytes> = args
            .iter()
            .map(|arg| Bytes::copy_from_slice(arg.as_bytes()))
            .collect();
        execute(&h.state, &mut h.client, &args).reply
    }

    #[test]
    fn scripts_call_commands_and_convert_replies_like_redis() {
        let mut h = Harness::new();
        assert_eq!(
            eval(
                &mut h,
                &[
                    "EVAL",
                    "return redis.call('set', KEYS[1], ARGV[1])",
                    "1",
                    "k",
                    "v"
                ]
            ),
            Frame::ok()
        );
        assert_eq!(
            eval(
                &mut h,
                &[
                    "EVAL",
                    "return {1, 'x', {ok='y'}, {err='z'}, 3.99, true, false}",
                    "0"
                ]
            ),
            Frame::Array(vec![
                Frame::Integer(1),
                bulk("x"),
                Frame::Simple("y".into()),
                err("z"),
                Frame::Integer(3),
                Frame::Integer(1),
                Frame::Null
            ])
        );
        assert_eq!(
            eval(&mut h, &["EVAL", "return redis.call('get', 'k')", "0"]),
            bulk("v")
        );
        let Frame::Error(text) = eval(&mut h, &["EVAL", "return redis.call('nope')", "0"]) else {
            panic!("an error")
        };
        assert!(
            text.starts_with("ERR Unknown Redis command called from script script: "),
            "{text}"
        );
        assert!(text.ends_with(", on @user_script:1."), "{text}");
        let Frame::Error(text) = eval(&mut h, &["EVAL", "x = 1", "0"]) else {
            panic!("an error")
        };
        assert!(
            text.starts_with("ERR user_script:1: Attempt to modify a readonly table script:"),
            "{text}"
        );
        let Frame::Error(text) = eval(&mut h, &["EVAL", "return os.time()", "0"]) else {
            panic!("an error")
        };
        assert!(
            text.starts_with(
                "ERR user_script:1: Script attempted to access nonexistent global variable 'os'"
            ),
            "{text}"
        );
        assert_eq!(
            eval(&mut h, &["EVAL", "return redis.pcall('incr', 'k')", "0"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            eval(
                &mut h,
                &[
                    "EVAL",
                    "local ok, e = pcall(redis.call, 'incr', 'k') return e",
                    "0"
                ]
            ),
            bulk("ERR value is not an integer or out of range")
        );
        assert_eq!(
            eval(&mut h, &["EVAL", "return 1", "2", "a"]),
            err("ERR Number of keys can't be greater than number of args")
        );
        assert_eq!(
            eval(&mut h, &["EVAL", "return 1", "-1"]),
            err("ERR Number of keys can't be negative")
        );
        assert_eq!(
            eval(&mut h, &["EVAL", "this is bad", "0"]),
            err("ERR Error compiling script (new function): user_script:1: '=' expected near 'is'")
        );
        let Frame::Error(text) = eval(&mut h, &["EVAL_RO", "return redis.call('del', 'k')", "0"])
        else {
            panic!("an error")
        };
        assert!(
            text.starts_with("ERR Write commands are not allowed from read-only scripts. script:"),
            "{text}"
        );
    }

    #[test]
    fn the_cache_serves_evalsha_and_script_commands() {
        let mut h = Harness::new();
        let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        assert_eq!(eval(&mut h, &["SCRIPT", "LOAD", "return 1"]), bulk(sha));
        assert_eq!(eval(&mut h, &["EVALSHA", sha, "0"]), Frame::Integer(1));
        assert_eq!(
            eval(&mut h, &["EVALSHA", &sha.to_uppercase(), "0"]),
            Frame::Integer(1)
        );
        assert_eq!(
            h.run(&format!("SCRIPT EXISTS {sha} abc")),
            Frame::Array(vec![Frame::Integer(1), Frame::Integer(0)])
        );
        assert_eq!(h.run("SCRIPT FLUSH"), Frame::ok());
        assert_eq!(
            h.run(&format!("EVALSHA {sha} 0")),
            err("NOSCRIPT No matching script. Please use EVAL.")
        );
        // EVAL caches what it ran.
        assert_eq!(eval(&mut h, &["EVAL", "return 1", "0"]), Frame::Integer(1));
        assert_eq!(h.run(&format!("EVALSHA {sha} 0")), Frame::Integer(1));
        assert_eq!(
            h.run("SCRIPT KILL"),
            err("NOTBUSY No scripts in execution right now.")
        );
        assert_eq!(
            h.run("SCRIPT foo"),
            err("ERR unknown subcommand 'foo'. Try SCRIPT HELP.")
        );
    }
}
