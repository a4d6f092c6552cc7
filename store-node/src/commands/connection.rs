//! Connection commands: PING, ECHO, QUIT, AUTH, HELLO, SELECT, CLIENT, RESET.

use std::sync::Arc;

use bytes::Bytes;

use super::flags::{ALLOW_BUSY, LOADING_OK, NO_AUTH, NO_QUEUE, NO_SCRIPT};
use super::CommandSpec;
use super::{is, parse_i64, text, Call, ClientState, ReplyMode, NOT_INTEGER, SYNTAX, WRONGPASS};
use crate::node::users::{any_password_matches, User};
use crate::protocol::{Frame, Protocol};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("ping", -1, LOADING_OK, ping),
    spec!("echo", 2, LOADING_OK, echo),
    spec!(
        "quit",
        -1,
        NO_AUTH | NO_QUEUE | LOADING_OK | NO_SCRIPT | ALLOW_BUSY,
        quit
    ),
    spec!(
        "auth",
        -2,
        NO_AUTH | NO_QUEUE | LOADING_OK | NO_SCRIPT | ALLOW_BUSY,
        auth
    ),
    spec!(
        "hello",
        -1,
        NO_AUTH | NO_QUEUE | LOADING_OK | NO_SCRIPT | ALLOW_BUSY,
        hello
    ),
    spec!("select", 2, LOADING_OK, select),
    spec!("client", -2, LOADING_OK | NO_SCRIPT, client),
    spec!(
        "reset",
        1,
        NO_AUTH | NO_QUEUE | LOADING_OK | NO_SCRIPT,
        reset
    ),
];

/// The Redis version store-node reports (clients read it from INFO and HELLO).
pub const REDIS_VERSION: &str = "7.2.4";

/// PING [message]; a subscribed RESP2 connection gets `[pong, message]` (Redis's reply in
/// subscribed mode).
pub fn ping(call: &mut Call<'_>) -> Frame {
    if call.client.subscriptions > 0 && call.client.protocol == Protocol::Resp2 {
        return match call.args.len() {
            1 => Frame::Array(vec![Frame::bulk(b"pong"), Frame::bulk(b"")]),
            2 => Frame::Array(vec![
                Frame::bulk(b"pong"),
                Frame::Bulk(call.args[1].clone()),
            ]),
            _ => super::wrong_arity("ping"),
        };
    }
    match call.args.len() {
        1 => Frame::Simple("PONG".into()),
        2 => Frame::Bulk(call.args[1].clone()),
        _ => super::wrong_arity("ping"),
    }
}

/// ECHO message
pub fn echo(call: &mut Call<'_>) -> Frame {
    Frame::Bulk(call.args[1].clone())
}

/// QUIT: replies OK, then the connection closes.
pub fn quit(call: &mut Call<'_>) -> Frame {
    call.client.close = true;
    Frame::ok()
}

/// The user a username/password pair authenticates: `Some(None)` for the `default` user (the
/// configured password, any line of the password file; without one it accepts anything, like
/// Redis's `nopass` default user), `Some(Some(user))` for a named user of `--users-dir`, `None`
/// when the pair is wrong.
fn check(call: &Call<'_>, user: &[u8], password: &[u8]) -> Option<Option<Arc<User>>> {
    if user == b"default" {
        let matches = match &call.state.password {
            None => true,
            Some(accepted) => any_password_matches(accepted, password),
        };
        return matches.then_some(None);
    }
    call.state
        .security
        .users
        .authenticate(user, password)
        .map(Some)
}

/// Marks the connection authenticated as `user`.
fn log_in(call: &mut Call<'_>, user: Option<Arc<User>>) {
    call.client.authenticated = true;
    call.client.user = user;
}

/// AUTH [username] password
pub fn auth(call: &mut Call<'_>) -> Frame {
    let (user, password): (&[u8], &[u8]) = match call.args.len() {
        2 => {
            if call.state.password.is_none() {
                return Frame::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                );
            }
            (b"default", &call.args[1])
        }
        3 => (&call.args[1], &call.args[2]),
        _ => return SYNTAX,
    };
    if let Some(user) = check(call, user, password) {
        log_in(call, user);
        Frame::ok()
    } else {
        tracing::debug!(client = call.client.id, "authentication failed");
        WRONGPASS
    }
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&byte| (b'!'..=b'~').contains(&byte))
}

const BAD_NAME: Frame =
    Frame::error("ERR Client names cannot contain spaces, newlines or special characters.");

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
pub fn hello(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let mut protocol = call.client.protocol;
    if let Some(version) = args.get(1) {
        match parse_i64(version) {
            Some(2) => protocol = Protocol::Resp2,
            Some(3) => protocol = Protocol::Resp3,
            Some(_) => return Frame::error("NOPROTO unsupported protocol version"),
            None => return Frame::error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut credentials: Option<(&Bytes, &Bytes)> = None;
    let mut name: Option<&Bytes> = None;
    let mut index = 2;
    while index < args.len() {
        if is(&args[index], "auth") && index + 2 < args.len() {
            credentials = Some((&args[index + 1], &args[index + 2]));
            index += 3;
        } else if is(&args[index], "setname") && index + 1 < args.len() {
            name = Some(&args[index + 1]);
            index += 2;
        } else {
            return Frame::Error(
                format!("ERR Syntax error in HELLO option '{}'", text(&args[index])).into(),
            );
        }
    }
    if let Some((user, password)) = credentials {
        let Some(user) = check(call, user, password) else {
            return WRONGPASS;
        };
        log_in(call, user);
    }
    if !call.client.authenticated {
        return Frame::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        if !valid_name(name) {
            return BAD_NAME;
        }
        call.client.name = (!name.is_empty()).then(|| name.clone());
    }
    call.client.protocol = protocol;
    if let Some(subscriber) = &call.client.subscriber {
        subscriber.set_resp3(protocol == Protocol::Resp3);
    }
    let version = match protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    Frame::Map(vec![
        (Frame::bulk(b"server"), Frame::bulk(b"redis")),
        (
            Frame::bulk(b"version"),
            Frame::bulk(REDIS_VERSION.as_bytes()),
        ),
        (Frame::bulk(b"proto"), Frame::Integer(version)),
        (Frame::bulk(b"id"), Frame::Integer(call.client.id as i64)),
        (Frame::bulk(b"mode"), Frame::bulk(b"standalone")),
        (Frame::bulk(b"role"), Frame::bulk(b"master")),
        (Frame::bulk(b"modules"), Frame::Array(Vec::new())),
    ])
}

/// SELECT index: only database 0 exists.
pub fn select(call: &mut Call<'_>) -> Frame {
    match parse_i64(&call.args[1]) {
        Some(0) => Frame::ok(),
        Some(_) => Frame::error("ERR DB index is out of range"),
        None => NOT_INTEGER,
    }
}

fn client_info_line(call: &Call<'_>) -> String {
    let client = &call.client;
    let name = client
        .name
        .as_ref()
        .map(|name| text(name))
        .unwrap_or_default();
    let resp = match client.protocol {
        Protocol::Resp2 => 2,
        Protocol::Resp3 => 3,
    };
    let lib_name = client
        .lib_name
        .as_ref()
        .map(|value| text(value))
        .unwrap_or_default();
    let lib_version = client
        .lib_version
        .as_ref()
        .map(|value| text(value))
        .unwrap_or_default();
    format!(
        "id={} addr={} name={} db=0 multi={} user={} resp={} lib-name={} lib-ver={}\n",
        client.id,
        client.address,
        name,
        client.multi.as_ref().map_or(-1, |queue| queue.len() as i64),
        client.user_name(),
        resp,
        lib_name,
        lib_version
    )
}

/// CLIENT SETNAME|GETNAME|ID|SETINFO|INFO|LIST|NO-EVICT|NO-TOUCH
pub fn client(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let sub = &args[1];
    let wrong = || {
        Frame::Error(
            format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                text(sub)
            )
            .into(),
        )
    };
    if is(sub, "setname") {
        if args.len() != 3 {
            return wrong();
        }
        if !valid_name(&args[2]) {
            return BAD_NAME;
        }
        call.client.name = (!args[2].is_empty()).then(|| args[2].clone());
        Frame::ok()
    } else if is(sub, "getname") {
        call.client.name.clone().map_or(Frame::Null, Frame::Bulk)
    } else if is(sub, "id") {
        Frame::Integer(call.client.id as i64)
    } else if is(sub, "setinfo") {
        if args.len() != 4 {
            return wrong();
        }
        if is(&args[2], "lib-name") {
            call.client.lib_name = Some(args[3].clone());
        } else if is(&args[2], "lib-ver") {
            call.client.lib_version = Some(args[3].clone());
        } else {
            return Frame::Error(format!("ERR Unrecognized option '{}'", text(&args[2])).into());
        }
        Frame::ok()
    } else if is(sub, "info") {
        Frame::Verbatim(Bytes::from(client_info_line(call)))
    } else if is(sub, "list") {
        // Only the calling connection is listed (no client registry yet).
        Frame::Verbatim(Bytes::from(client_info_line(call)))
    } else if is(sub, "no-evict") || is(sub, "no-touch") {
        Frame::ok()
    } else if is(sub, "reply") {
        if args.len() != 3 {
            return super::wrong_arity("client|reply");
        }
        client_reply(call.client, &args[2])
    } else {
        wrong()
    }
}

/// CLIENT REPLY ON|OFF|SKIP: OFF and SKIP answer nothing (the connection leaves out the
/// replies they stop; pushes still go out, as in Redis 7.2).
fn client_reply(client: &mut ClientState, mode: &[u8]) -> Frame {
    if is(mode, "on") {
        client.reply = ReplyMode::On;
        Frame::ok()
    } else if is(mode, "off") {
        client.reply = ReplyMode::Off;
        Frame::Sequence(Vec::new())
    } else if is(mode, "skip") {
        if client.reply != ReplyMode::Off {
            client.reply = ReplyMode::SkipNext;
        }
        Frame::Sequence(Vec::new())
    } else {
        SYNTAX
    }
}

/// RESET: back to a fresh connection (RESP2, no name, out of MULTI, no subscriptions,
/// unauthenticated when a password is set).
pub fn reset(call: &mut Call<'_>) -> Frame {
    call.client.protocol = Protocol::Resp2;
    call.client.name = None;
    call.client.multi = None;
    call.client.multi_failed = false;
    call.client.watched.clear();
    call.client.authenticated = call.state.password.is_none();
    call.client.user = None;
    if call.client.subscriber.take().is_some() {
        call.state.pubsub.remove_client(call.client.id);
    }
    call.client.subscriptions = 0;
    call.client.reply = ReplyMode::On;
    Frame::Simple("RESET".into())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::{Frame, Protocol};

    #[test]
    fn hello_and_auth() {
        let mut h = Harness::with_password(Some("pw"));
        assert!(
            matches!(h.run("HELLO 3"), Frame::Error(text) if text.starts_with("NOAUTH HELLO must be called"))
        );
        assert_eq!(
            h.run("HELLO 3 AUTH default bad"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
        assert_eq!(h.client.protocol, Protocol::Resp2);
        let Frame::Map(pairs) = h.run("HELLO 3 AUTH default pw SETNAME app") else {
            panic!("not a map")
        };
        assert_eq!(pairs[2], (bulk("proto"), Frame::Integer(3)));
        assert_eq!(h.client.protocol, Protocol::Resp3);
        assert_eq!(h.run("CLIENT GETNAME"), bulk("app"));
        assert_eq!(
            h.run("HELLO 4"),
            err("NOPROTO unsupported protocol version")
        );
        assert_eq!(
            h.run("HELLO x"),
            err("ERR Protocol version is not an integer or out of range")
        );
        assert_eq!(
            h.run("AUTH other pw"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
        assert_eq!(h.run("SELECT 0"), Frame::ok());
        assert_eq!(h.run("SELECT 1"), err("ERR DB index is out of range"));
        assert_eq!(h.run("CLIENT SETNAME a b"), err("ERR unknown subcommand or wrong number of arguments for 'SETNAME'. Try CLIENT HELP."));
        assert_eq!(h.run("RESET"), Frame::Simple("RESET".into()));
        assert_eq!(h.run("GET k"), err("NOAUTH Authentication required."));
    }

    fn users(entries: &[(&str, &str, &str)]) -> crate::node::users::Users {
        let dir = std::env::temp_dir().join(format!(
            "store-node-command-users-{}-{}",
            std::process::id(),
            entries.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, role, password) in entries {
            let user = dir.join(name);
            std::fs::create_dir_all(&user).expect("user dir");
            std::fs::write(user.join("role"), role).expect("role");
            std::fs::write(user.join("password"), password).expect("password");
        }
        crate::node::users::Users::load(&dir).expect("users")
    }

    #[test]
    fn named_users_and_their_roles() {
        let mut h = Harness::with_users(
            Some("pw"),
            users(&[("alice", "readonly", "apw"), ("bob", "readwrite", "bpw")]),
        );
        assert_eq!(
            h.run("AUTH alice wrong"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
        assert_eq!(h.run("AUTH alice apw"), Frame::ok());
        assert_eq!(h.run("GET k"), Frame::Null);
        // Redis 7.2's text (7.0 said "this user has no permissions ...").
        assert_eq!(
            h.run("SET k v"),
            err("NOPERM User alice has no permissions to run the 'set' command")
        );
        assert_eq!(
            h.run("DEL k"),
            err("NOPERM User alice has no permissions to run the 'del' command")
        );
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(
            h.run("HSET h f v"),
            err("NOPERM User alice has no permissions to run the 'hset' command")
        );
        assert_eq!(
            h.run("EXEC"),
            err("EXECABORT Transaction discarded because of previous errors.")
        );
        assert!(
            matches!(h.run("CLIENT INFO"), Frame::Verbatim(line) if String::from_utf8_lossy(&line).contains(" user=alice "))
        );
        let Frame::Map(_) = h.run("HELLO 3 AUTH bob bpw") else {
            panic!("HELLO with a named user")
        };
        assert_eq!(h.run("SET k v"), Frame::ok());
        assert_eq!(h.run("AUTH default pw"), Frame::ok());
        assert_eq!(h.run("SET k v2"), Frame::ok());
        assert_eq!(
            h.run("AUTH default apw"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
    }

    #[test]
    fn auth_accepts_each_line_of_the_password_file() {
        let mut h = Harness::with_password(Some("new\n\nold"));
        for line in ["AUTH new", "AUTH old", "AUTH default old"] {
            assert_eq!(h.run(line), Frame::ok(), "{line}");
        }
        for line in ["AUTH new\n\nold", "AUTH ", "AUTH ne"] {
            assert_eq!(
                h.run(line),
                err("WRONGPASS invalid username-password pair or user is disabled."),
                "{line:?}"
            );
        }
    }

    #[test]
    fn auth_without_password() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("AUTH x"),
            err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
        );
        assert_eq!(h.run("AUTH default anything"), Frame::ok());
        assert_eq!(h.run("PING"), Frame::Simple("PONG".into()));
        assert_eq!(h.run("ECHO hi"), bulk("hi"));
    }
}
