//! Command dispatch. A command takes its arguments and returns a [`Frame`], noting the receipts
//! of its writes in its [`Call`]; this module looks it up, checks arity, authentication,
//! transactions and memory, and counts it. Families live in their own files: [`strings`],
//! [`keys`], [`hashes`], [`connection`], [`info`], [`admin`], [`transaction`], [`pubsub`],
//! [`scripting`].

/// A [`CommandSpec`] literal: name, Redis arity, [`flags`] bits, handler.
macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $handler:path) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            handler: $handler,
        }
    };
}

pub mod admin;
pub mod configure;
pub mod connection;
pub mod counters;
pub mod cursor;
pub mod hashes;
pub mod info;
pub mod keys;
pub mod lists;
pub mod objects;
pub mod pubsub;
pub mod scripting;
pub mod sets;
pub mod settings;
pub mod strings;
pub mod transaction;
pub mod typed;
pub mod zranges;
pub mod zsets;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

pub use crate::config::KeyspaceEvents;
use crate::metrics::LocalMetrics;
use crate::node::users::{Role, User};
use crate::node::NodeState;
use crate::protocol::{Frame, Protocol};
use crate::pubsub::Subscriber;
use crate::store::WriteReceipt;

/// `ERR value is not an integer or out of range`
pub const NOT_INTEGER: Frame = Frame::error("ERR value is not an integer or out of range");
/// `ERR syntax error`
pub const SYNTAX: Frame = Frame::error("ERR syntax error");
/// `WRONGTYPE ...`
pub const WRONG_TYPE: Frame =
    Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value");
/// Redis's OOM error.
pub const OOM: Frame = Frame::error("OOM command not allowed when used memory > 'maxmemory'.");
/// `NOAUTH Authentication required.`
pub const NOAUTH: Frame = Frame::error("NOAUTH Authentication required.");
/// Redis's answer to data commands while it loads its dataset (here: disc recovery, or not
/// yet synced with the peers).
pub const LOADING: Frame = Frame::error("LOADING Redis is loading the dataset in memory");
/// `WRONGPASS ...`
pub const WRONGPASS: Frame =
    Frame::error("WRONGPASS invalid username-password pair or user is disabled.");

/// Per-connection state.
#[derive(Debug)]
pub struct ClientState {
    /// Client id (`CLIENT ID`).
    pub id: u64,
    /// Protocol chosen with HELLO.
    pub protocol: Protocol,
    /// `CLIENT SETNAME` / `HELLO SETNAME`.
    pub name: Option<Bytes>,
    /// Whether AUTH succeeded (always true without a password).
    pub authenticated: bool,
    /// The named user AUTH chose (`None`: the default user).
    pub user: Option<Arc<User>>,
    /// Commands queued after MULTI.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// Bytes of the arguments queued after MULTI (Redis's `argv_len_sums`), counted against
    /// `--client-query-buffer-limit`.
    pub multi_bytes: usize,
    /// Whether a queued command was refused (EXEC then aborts).
    pub multi_failed: bool,
    /// Keys under `WATCH`: EXEC aborts when one of them changed.
    pub watched: Vec<crate::store::Watch>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_version: Option<Bytes>,
    /// Set by QUIT: close after writing the reply.
    pub close: bool,
    /// Remote address, for CLIENT LIST/INFO.
    pub address: String,
    /// Counters not yet added to the node's metrics (the server flushes them per batch).
    pub metrics: LocalMetrics,
    /// The connection's pub/sub queue, from its first subscription on.
    pub subscriber: Option<Arc<Subscriber>>,
    /// Channels, patterns and shard channels subscribed to: a RESP2 connection with any is in
    /// subscribed mode.
    pub subscriptions: usize,
    /// Growth writes go on while memory is full: a script's own client when its shebang
    /// declares `allow-oom`.
    pub allow_oom: bool,
    /// `CLIENT REPLY`: which replies the connection writes.
    pub reply: ReplyMode,
}

/// What `CLIENT REPLY` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Every reply (the default).
    On,
    /// No reply until `CLIENT REPLY ON`.
    Off,
    /// `CLIENT REPLY SKIP` was just executed: the next command's reply is left out.
    SkipNext,
    /// This command's reply is left out.
    Skip,
}

impl ClientState {
    /// Whether the reply of the command just executed is written, moving `CLIENT REPLY SKIP`
    /// on by one command (Redis's `CLIENT_REPLY_SKIP_NEXT` and `CLIENT_REPLY_SKIP`).
    pub fn take_reply(&mut self) -> bool {
        match self.reply {
            ReplyMode::On => true,
            ReplyMode::Off => false,
            ReplyMode::SkipNext => {
                self.reply = ReplyMode::Skip;
                false
            }
            ReplyMode::Skip => {
                self.reply = ReplyMode::On;
                false
            }
        }
    }

    /// A fresh connection's state.
    pub fn new(id: u64, authenticated: bool, address: String) -> ClientState {
        ClientState {
            id,
            protocol: Protocol::Resp2,
            name: None,
            authenticated,
            user: None,
            multi: None,
            multi_bytes: 0,
            multi_failed: false,
            watched: Vec::new(),
            lib_name: None,
            lib_version: None,
            close: false,
            address,
            metrics: Default::default(),
            subscriber: None,
            subscriptions: 0,
            allow_oom: false,
            reply: ReplyMode::On,
        }
    }
}

/// One command invocation.
pub struct Call<'a> {
    /// Node state.
    pub state: &'a NodeState,
    /// The calling connection.
    pub client: &'a mut ClientState,
    /// Arguments, the command name first.
    pub args: &'a [Bytes],
    /// What the command's writes ask its client to wait for.
    pub receipt: WriteReceipt,
}

impl Call<'_> {
    /// Notes the receipt of one of the command's writes.
    pub fn wrote(&mut self, receipt: WriteReceipt) {
        self.receipt.merge(receipt);
    }

    /// Publishes the keyspace event `event` (of [`KeyspaceEvents`] class `class`) of `key`, as
    /// Redis's command does after its write; one relaxed load when the class is off.
    pub fn notify(&self, class: u32, event: &str, key: &[u8]) {
        self.state.notifier.notify(class, event, key);
    }
}

/// A command's reply and what its client must wait for before the reply is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The reply.
    pub reply: Frame,
    /// The merged receipt of the command's writes.
    pub receipt: WriteReceipt,
}

impl From<Frame> for Executed {
    fn from(reply: Frame) -> Executed {
        Executed {
            reply,
            receipt: WriteReceipt::NONE,
        }
    }
}

/// Command properties.
pub mod flags {
    /// May grow memory: refused (or evicts) while the memory alarm is raised.
    pub const DENY_OOM: u8 = 1;
    /// Allowed before authentication.
    pub const NO_AUTH: u8 = 2;
    /// Executed immediately even inside MULTI.
    pub const NO_QUEUE: u8 = 4;
    /// Changes the keyspace.
    pub const WRITE: u8 = 8;
    /// Answered while the node loads: recovers from disc or syncs with its peers (Redis's
    /// `loading` flag); every other command gets `LOADING` meanwhile (reads excepted under
    /// `replica-serve-stale-data yes` once disc recovery is done).
    pub const LOADING_OK: u8 = 16;
    /// Refused inside a Lua script (`redis.call`), as Redis's `noscript` commands.
    pub const NO_SCRIPT: u8 = 32;
    /// Runs a Lua script: the connection runs it off its thread holding the transaction gate
    /// exclusively, so other clients can be told `BUSY`.
    pub const SCRIPT: u8 = 64;
    /// Answered while a script is busy (`SCRIPT KILL`, `AUTH`...): never waits for the gate.
    pub const ALLOW_BUSY: u8 = 128;
}

impl ClientState {
    /// The role of the authenticated user (the default user may run everything).
    pub fn role(&self) -> Role {
        self.user
            .as_ref()
            .map_or(Role::ReadWrite, |user| user.role())
    }

    /// The name of the authenticated user, as CLIENT LIST shows it.
    pub fn user_name(&self) -> &str {
        self.user.as_ref().map_or("default", |user| user.name())
    }
}

/// Redis 7.2's refusal of a command the user's role does not allow (`name` is the command's
/// full name, `config|set` for a subcommand).
pub fn no_permission(client: &ClientState, name: &str) -> Frame {
    Frame::Error(
        format!(
            "NOPERM User {} has no permissions to run the '{name}' command",
            client.user_name()
        )
        .into(),
    )
}

/// A command's static description.
pub struct CommandSpec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis arity: exact when positive, minimum when negative; counts the name.
    pub arity: i32,
    /// [`flags`] bits.
    pub flags: u8,
    /// The implementation.
    pub handler: fn(&mut Call<'_>) -> Frame,
}

use flags::{DENY_OOM, LOADING_OK, NO_AUTH, NO_QUEUE, WRITE};

/// The command families, each a table in its own file.
static FAMILIES: &[&[CommandSpec]] = &[
    strings::COMMANDS,
    counters::COMMANDS,
    keys::COMMANDS,
    objects::COMMANDS,
    hashes::COMMANDS,
    sets::COMMANDS,
    zsets::COMMANDS,
    zranges::COMMANDS,
    lists::COMMANDS,
    connection::COMMANDS,
    info::COMMANDS,
    admin::COMMANDS,
    transaction::COMMANDS,
    pubsub::COMMANDS,
    scripting::COMMANDS,
];

/// Every command store-node implements, in one table (an index into it names a command in
/// metrics).
pub fn commands() -> &'static [&'static CommandSpec] {
    static ALL: OnceLock<Vec<&'static CommandSpec>> = OnceLock::new();
    ALL.get_or_init(|| FAMILIES.iter().flat_map(|family| family.iter()).collect())
}

/// Command names are at most this long (checked by a test), so a name packs into one `u128`.
const MAX_NAME_LEN: usize = 16;

/// `name` packed little-endian into a `u128` and lowercased, without a loop over its bytes;
/// `None` when it is longer than any command name. The zero padding makes `get` and `get\0`
/// pack alike: [`lookup`] compares the lengths too.
fn packed_name(name: &[u8]) -> Option<u128> {
    let mut bytes = [0u8; MAX_NAME_LEN];
    bytes.get_mut(..name.len())?.copy_from_slice(name);
    let word = u128::from_le_bytes(bytes);
    // ASCII lowercase of all 16 bytes at once: on each byte's low 7 bits, adding 0x3f sets
    // bit 7 from 'A' up, adding 0x25 from past 'Z' up (no carry leaves a byte); bytes with
    // bit 7 set are not ASCII and stay as they are, like `to_ascii_lowercase`.
    const LOW7: u128 = u128::from_le_bytes([0x7f; MAX_NAME_LEN]);
    const HIGH: u128 = u128::from_le_bytes([0x80; MAX_NAME_LEN]);
    const FROM_A: u128 = u128::from_le_bytes([0x80 - b'A'; MAX_NAME_LEN]);
    const PAST_Z: u128 = u128::from_le_bytes([0x80 - b'Z' - 1; MAX_NAME_LEN]);
    let low = word & LOW7;
    let upper = ((low + FROM_A) ^ (low + PAST_Z)) & !word & HIGH;
    Some(word | (upper >> 2))
}

/// Slots of the name table (a power of two): four times the commands and more, so a probe
/// ends within a slot or two.
const NAME_SLOT_BITS: u32 = 10;

/// The slot a packed name's probe starts at (a multiplicative hash of its two halves).
fn name_slot(packed: u128) -> usize {
    let folded = (packed as u64) ^ ((packed >> 64) as u64).rotate_left(29);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - NAME_SLOT_BITS)) as usize
}

/// Open addressing over the packed names: `(packed name, index + 1)`, 0 for an empty slot.
/// Fixed once built, so no input makes a probe longer than the table's longest run.
fn table() -> &'static [(u128, u16)] {
    static TABLE: OnceLock<Vec<(u128, u16)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut slots = vec![(0, 0); 1 << NAME_SLOT_BITS];
        for (index, spec) in commands().iter().enumerate() {
            let (Some(packed), Ok(tag)) =
                (packed_name(spec.name.as_bytes()), u16::try_from(index + 1))
            else {
                continue;
            };
            let mut slot = name_slot(packed);
            while slots[slot].1 != 0 {
                slot = (slot + 1) & ((1 << NAME_SLOT_BITS) - 1);
            }
            slots[slot] = (packed, tag);
        }
        slots
    })
}

/// Finds a command by name, case-insensitively, without allocating: one probe of the packed
/// name (every request asks, some twice).
pub fn lookup(name: &[u8]) -> Option<usize> {
    let packed = packed_name(name)?;
    let slots = table();
    let mut slot = name_slot(packed);
    loop {
        let (key, tag) = *slots.get(slot)?;
        if tag == 0 {
            return None;
        }
        if key == packed {
            let index = usize::from(tag) - 1;
            return (commands()[index].name.len() == name.len()).then_some(index);
        }
        slot = (slot + 1) & ((1 << NAME_SLOT_BITS) - 1);
    }
}

fn unknown_command(args: &[Bytes]) -> Frame {
    let name = String::from_utf8_lossy(&args[0]);
    let name: String = name.chars().take(128).collect();
    let mut rest = String::new();
    for arg in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let text = String::from_utf8_lossy(arg);
        let room = 128 - rest.len();
        rest.push('\'');
        rest.extend(text.chars().take(room));
        rest.push_str("' ");
    }
    Frame::Error(format!("ERR unknown command '{name}', with args beginning with: {rest}").into())
}

/// `ERR wrong number of arguments for '<name>' command`
pub fn wrong_arity(name: &str) -> Frame {
    Frame::Error(format!("ERR wrong number of arguments for '{name}' command").into())
}

/// Checks name and arity of the command `found` by [`lookup`] of `args[0]`; returns its index
/// or the error reply.
fn resolve(args: &[Bytes], found: Option<usize>) -> Result<usize, Frame> {
    let Some(index) = found else {
        return Err(unknown_command(args));
    };
    let spec = commands()[index];
    let count = args.len() as i32;
    if (spec.arity > 0 && count != spec.arity) || (spec.arity < 0 && count < -spec.arity) {
        return Err(wrong_arity(spec.name));
    }
    Ok(index)
}

/// Executes one request for a connection and returns the reply with its receipt.
pub fn execute(state: &NodeState, client: &mut ClientState, args: &[Bytes]) -> Executed {
    let found = args.first().and_then(|name| lookup(name));
    execute_found(state, client, args, found)
}

/// [`execute`] with the command already looked up (`found`: [`lookup`] of `args[0]`): the
/// connection looks each request's command up once, to ask whether it runs a script first.
pub fn execute_found(
    state: &NodeState,
    client: &mut ClientState,
    args: &[Bytes],
    found: Option<usize>,
) -> Executed {
    if args.is_empty() {
        return Frame::ok().into();
    }
    let index = match resolve(args, found) {
        Ok(index) => index,
        Err(reply) => {
            if client.multi.is_some() {
                client.multi_failed = true;
            }
            return reply.into();
        }
    };
    let spec = commands()[index];
    if client.user.as_ref().is_some_and(|user| user.removed()) {
        // The user was removed from --users-dir: its connections are no longer
        // authenticated (Redis closes them).
        client.user = None;
        client.authenticated = state.password.is_none();
    }
    if !client.authenticated && spec.flags & NO_AUTH == 0 {
        return NOAUTH.into();
    }
    if client.subscriptions > 0
        && client.protocol == Protocol::Resp2
        && !pubsub::SUBSCRIBED_MODE_COMMANDS.contains(&spec.name)
    {
        return pubsub::not_allowed_while_subscribed(spec.name).into();
    }
    if spec.flags & WRITE != 0 && client.role() == Role::ReadOnly {
        // Redis checks permissions before queueing: the transaction is then aborted.
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return no_permission(client, spec.name).into();
    }
    if spec.flags & LOADING_OK == 0
        && state.data_loading()
        && !(spec.flags & WRITE == 0 && state.serves_stale_reads())
    {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return LOADING.into();
    }
    if let Some(queue) = client.multi.as_mut() {
        if spec.flags & NO_QUEUE == 0 {
            client.multi_bytes += args.iter().map(Bytes::len).sum::<usize>();
            queue.push(args.to_vec());
            return Frame::Simple("QUEUED".into()).into();
        }
    }
    run(state, client, index, args)
}

/// Whether executing `args` now may write: a write command outside MULTI, or an EXEC whose
/// queue holds one. The connection asks before it executes a request while the write-ahead
/// log is full, to wait for room asynchronously instead of in the command.
pub fn may_write(client: &ClientState, args: &[Bytes]) -> bool {
    let writes = |args: &[Bytes]| {
        args.first()
            .and_then(|name| lookup(name))
            .is_some_and(|index| commands()[index].flags & WRITE != 0)
    };
    match &client.multi {
        Some(queue) => {
            args.first().is_some_and(|name| is(name, "exec"))
                && queue.iter().any(|queued| writes(queued))
        }
        None => writes(args),
    }
}

/// Runs a resolved command (also used by EXEC for queued commands).
pub(crate) fn run(
    state: &NodeState,
    client: &mut ClientState,
    index: usize,
    args: &[Bytes],
) -> Executed {
    let spec = commands()[index];
    let started = client.metrics.command_start();
    if spec.flags & DENY_OOM != 0 && !client.allow_oom && !state.engine.make_room() {
        state.metrics.oom_rejections.fetch_add(1, Ordering::Relaxed);
        return OOM.into();
    }
    if spec.flags & WRITE != 0 {
        if let Err(error) = crate::node::disc::admit_write(state) {
            return Frame::Error(error.to_string().into()).into();
        }
    }
    let mut call = Call {
        state,
        client,
        args,
        receipt: WriteReceipt::NONE,
    };
    let reply = (spec.handler)(&mut call);
    call.client.metrics.observe_since(index, started);
    Executed {
        reply,
        receipt: call.receipt,
    }
}

/// Parses an integer the way Redis's `string2ll` does: no spaces, no `+`, no leading zeros.
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    if arg.is_empty() || arg.len() > 20 {
        return None;
    }
    if arg == b"0" {
        return Some(0);
    }
    let (negative, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        _ => (false, arg),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(byte - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

/// Case-insensitive comparison of an argument with a lowercase keyword.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// The lossy UTF-8 text of an argument, for error messages.
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to run commands as frame → frame without sockets.

    use std::sync::Arc;

    use bytes::Bytes;

    use super::{execute, ClientState};
    use crate::config::Config;
    use crate::node::NodeState;
    use crate::protocol::Frame;
    use crate::store::{EngineConfig, MemoryEngine};

    pub struct Harness {
        pub state: NodeState,
        pub client: ClientState,
    }

    impl Harness {
        pub fn new() -> Harness {
            Harness::with_password(None)
        }

        pub fn with_users(password: Option<&str>, users: crate::node::users::Users) -> Harness {
            let mut harness = Harness::with_password(password);
            harness.state.security.users = users;
            harness
        }

        pub fn with_password(password: Option<&str>) -> Harness {
            let engine = Arc::new(MemoryEngine::new(EngineConfig::default()));
            let state = NodeState::new(Config::for_tests(), engine, password.map(str::to_string));
            let client = ClientState::new(1, password.is_none(), "test".into());
            Harness { state, client }
        }

        pub fn run(&mut self, line: &str) -> Frame {
            let args: Vec<Bytes> = line
                .split(' ')
                .map(|arg| Bytes::copy_from_slice(arg.as_bytes()))
                .collect();
            execute(&self.state, &mut self.client, &args).reply
        }
    }

    pub fn bulk(text: &str) -> Frame {
        Frame::bulk(text.as_bytes())
    }

    pub fn err(text: &str) -> Frame {
        Frame::Error(text.to_string().into())
    }

    /// An array reply with its items sorted (for replies in no particular order).
    pub fn sorted(frame: Frame) -> Frame {
        match frame {
            Frame::Array(mut items) | Frame::Set(mut items) => {
                items.sort_by_key(|item| format!("{item:?}"));
                Frame::Array(items)
            }
            other => other,
        }
    }

    /// The number of items of an array reply (0 for anything else).
    pub fn array_len(frame: Frame) -> usize {
        match frame {
            Frame::Array(items) | Frame::Set(items) => items.len(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn every_command_has_a_metrics_slot() {
        assert!(commands().len() <= crate::metrics::COMMAND_SLOTS);
    }

    #[test]
    fn the_name_table_has_room_for_every_command() {
        assert!(commands().len() * 4 <= 1 << NAME_SLOT_BITS);
    }

    #[test]
    fn every_command_name_packs_and_is_found_in_any_case() {
        for (index, spec) in commands().iter().enumerate() {
            assert!(spec.name.len() <= MAX_NAME_LEN, "{}", spec.name);
            assert_eq!(lookup(spec.name.as_bytes()), Some(index), "{}", spec.name);
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(lookup(upper.as_bytes()), Some(index), "{upper}");
        }
    }

    #[test]
    fn lookup_folds_ascii_case_only() {
        let get = lookup(b"get");
        assert!(get.is_some());
        for name in [&b"GET"[..], b"gEt", b"Get"] {
            assert_eq!(lookup(name), get, "{:?}", String::from_utf8_lossy(name));
        }
        // Padding, bytes near the letters, non-ASCII and over-long names find nothing.
        for name in [
            &b"get\0"[..],
            b"\0get",
            b"",
            b"g@t",
            b"g[t",
            b"g\xc5t",
            b"get\xc0",
            b"getxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(lookup(name), None, "{:?}", String::from_utf8_lossy(name));
        }
        // Every byte folds exactly as `to_ascii_lowercase` does, whatever its neighbours.
        for byte in 0..=u8::MAX {
            let name = [byte; MAX_NAME_LEN];
            let expected = u128::from_le_bytes(name.map(|byte| byte.to_ascii_lowercase()));
            assert_eq!(packed_name(&name), Some(expected), "byte {byte:#04x}");
        }
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b"01"[..], b"+1", b" 1", b"1 ", b"", b"-", b"-0", b"1a"] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unknown_and_arity_errors() {
        let mut harness = Harness::new();
        assert_eq!(
            harness.run("foo a b"),
            err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            harness.run("GET"),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(harness.run("gEt missing"), Frame::Null);
    }

    #[test]
    fn noauth_before_auth() {
        let mut harness = Harness::with_password(Some("secret"));
        assert_eq!(harness.run("GET k"), err("NOAUTH Authentication required."));
        assert_eq!(harness.run("AUTH wrong"), WRONGPASS);
        assert_eq!(harness.run("AUTH default secret"), Frame::ok());
        assert_eq!(harness.run("GET k"), Frame::Null);
    }
}
