//! Keyspace notifications over real TCP, byte for byte: one conversation runs against an
//! in-process node and, where Debian's `redis-server` is installed, against a real Redis
//! started on a free loopback port in the same run. A subscriber of `__keyevent@0__:*` and one
//! of `__keyspace@0__:<key>` must receive exactly the push messages written here, for every
//! write command store-node has, for active expiry, and for `CONFIG SET`/`GET` of
//! `notify-keyspace-events` (canonical form, error for an unknown letter).

mod common;

use std::net::SocketAddr;

use common::versus_redis::{against_both, Conn};
use common::{http, node, node_with};
use store_node::config::KeyspaceEvents;

/// The RESP2 bytes of a `pmessage` of pattern `__keyevent@0__:*` for `event` of `key`.
fn keyevent(event: &str, key: &str) -> String {
    let channel = format!("__keyevent@0__:{event}");
    format!(
        "*4\r\n$8\r\npmessage\r\n$16\r\n__keyevent@0__:*\r\n${}\r\n{channel}\r\n${}\r\n{key}\r\n",
        channel.len(),
        key.len()
    )
}

/// Runs `command` on `client` expecting `reply`, then reads exactly `events` (event, key) from
/// `events_of`, in order.
fn expect(
    client: &mut Conn,
    events_of: &mut Conn,
    command: &[&str],
    reply: &str,
    events: &[(&str, &str)],
) {
    assert_eq!(client.call(command), reply, "{command:?}");
    for (event, key) in events {
        assert_eq!(
            events_of.reply(),
            keyevent(event, key),
            "{command:?}: event {event} of {key}"
        );
    }
}

fn notifications_conversation(address: SocketAddr) {
    let mut c = Conn::open(address);
    assert_eq!(c.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "Kq"]),
        "-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.\r\n"
    );
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "Egx"]),
        "+OK\r\n"
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "notify-keyspace-events"]),
        "*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\ngxE\r\n"
    );
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "KEAn"]),
        "+OK\r\n"
    );
    // Redis 7.0 leaves `n` out of the canonical form beside `A` (it still publishes it).
    assert_eq!(
        c.call(&["CONFIG", "GET", "notify-keyspace-events"]),
        "*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n"
    );

    let mut events = Conn::open(address);
    assert_eq!(
        events.call(&["PSUBSCRIBE", "__keyevent@0__:*"]),
        "*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyevent@0__:*\r\n:1\r\n"
    );
    let mut space = Conn::open(address);
    assert_eq!(
        space.call(&["SUBSCRIBE", "__keyspace@0__:h"]),
        "*3\r\n$9\r\nsubscribe\r\n$16\r\n__keyspace@0__:h\r\n:1\r\n"
    );
    let e = &mut events;

    // Strings.
    expect(
        &mut c,
        e,
        &["SET", "s", "1"],
        "+OK\r\n",
        &[("new", "s"), ("set", "s")],
    );
    expect(
        &mut c,
        e,
        &["SET", "s", "2", "EX", "100"],
        "+OK\r\n",
        &[("set", "s"), ("expire", "s")],
    );
    expect(
        &mut c,
        e,
        &["SET", "s", "3", "KEEPTTL"],
        "+OK\r\n",
        &[("set", "s")],
    );
    expect(&mut c, e, &["SET", "s", "3", "NX"], "$-1\r\n", &[]);
    expect(&mut c, e, &["SET", "absent", "3", "XX"], "$-1\r\n", &[]);
    expect(
        &mut c,
        e,
        &["SETEX", "s2", "100", "v"],
        "+OK\r\n",
        &[("new", "s2"), ("set", "s2"), ("expire", "s2")],
    );
    expect(
        &mut c,
        e,
        &["PSETEX", "s2", "100000", "v"],
        "+OK\r\n",
        &[("set", "s2"), ("expire", "s2")],
    );
    expect(&mut c, e, &["SETNX", "s", "9"], ":0\r\n", &[]);
    expect(
        &mut c,
        e,
        &["SETNX", "s3", "v"],
        ":1\r\n",
        &[("new", "s3"), ("set", "s3")],
    );
    expect(
        &mut c,
        e,
        &["APPEND", "s", "x"],
        ":2\r\n",
        &[("append", "s")],
    );
    expect(
        &mut c,
        e,
        &["APPEND", "ap", "x"],
        ":1\r\n",
        &[("new", "ap"), ("append", "ap")],
    );
    expect(
        &mut c,
        e,
        &["INCR", "n"],
        ":1\r\n",
        &[("new", "n"), ("incrby", "n")],
    );
    expect(
        &mut c,
        e,
        &["INCRBY", "n", "5"],
        ":6\r\n",
        &[("incrby", "n")],
    );
    expect(&mut c, e, &["DECR", "n"], ":5\r\n", &[("incrby", "n")]);
    expect(
        &mut c,
        e,
        &["DECRBY", "n", "2"],
        ":3\r\n",
        &[("incrby", "n")],
    );
    expect(
        &mut c,
        e,
        &["GETSET", "s", "5"],
        "$2\r\n3x\r\n",
        &[("set", "s")],
    );
    expect(
        &mut c,
        e,
        &["MSET", "a", "1", "b", "2"],
        "+OK\r\n",
        &[("new", "a"), ("set", "a"), ("new", "b"), ("set", "b")],
    );
    expect(
        &mut c,
        e,
        &["GETEX", "s", "EX", "100"],
        "$1\r\n5\r\n",
        &[("expire", "s")],
    );
    expect(
        &mut c,
        e,
        &["GETEX", "s", "PERSIST"],
        "$1\r\n5\r\n",
        &[("persist", "s")],
    );
    expect(&mut c, e, &["GETEX", "s", "PERSIST"], "$1\r\n5\r\n", &[]);
    expect(&mut c, e, &["GETEX", "s"], "$1\r\n5\r\n", &[]);
    expect(
        &mut c,
        e,
        &["GETEX", "s3", "PXAT", "1"],
        "$1\r\nv\r\n",
        &[("del", "s3")],
    );
    expect(
        &mut c,
        e,
        &["GETDEL", "s2"],
        "$1\r\nv\r\n",
        &[("del", "s2")],
    );
    expect(&mut c, e, &["GETDEL", "s2"], "$-1\r\n", &[]);

    // Generic.
    expect(
        &mut c,
        e,
        &["EXPIRE", "a", "100"],
        ":1\r\n",
        &[("expire", "a")],
    );
    expect(&mut c, e, &["EXPIRE", "a", "200", "NX"], ":0\r\n", &[]);
    expect(
        &mut c,
        e,
        &["PEXPIREAT", "a", "99999999999999"],
        ":1\r\n",
        &[("expire", "a")],
    );
    expect(&mut c, e, &["PERSIST", "a"], ":1\r\n", &[("persist", "a")]);
    expect(&mut c, e, &["PERSIST", "a"], ":0\r\n", &[]);
    expect(&mut c, e, &["EXPIRE", "b", "0"], ":1\r\n", &[("del", "b")]);
    expect(&mut c, e, &["EXPIRE", "nosuch", "10"], ":0\r\n", &[]);
    expect(
        &mut c,
        e,
        &["DEL", "a", "n", "nosuch"],
        ":2\r\n",
        &[("del", "a"), ("del", "n")],
    );
    expect(&mut c, e, &["UNLINK", "ap"], ":1\r\n", &[("del", "ap")]);
    expect(
        &mut c,
        e,
        &["SET", "r", "1"],
        "+OK\r\n",
        &[("new", "r"), ("set", "r")],
    );
    expect(
        &mut c,
        e,
        &["RENAME", "r", "r2"],
        "+OK\r\n",
        &[("new", "r2"), ("rename_from", "r"), ("rename_to", "r2")],
    );
    // A target that exists is deleted and created again: `new` all the same.
    expect(
        &mut c,
        e,
        &["RENAME", "r2", "s"],
        "+OK\r\n",
        &[("new", "s"), ("rename_from", "r2"), ("rename_to", "s")],
    );
    expect(&mut c, e, &["RENAME", "s", "s"], "+OK\r\n", &[]);
    expect(
        &mut c,
        e,
        &["SET", "t", "1"],
        "+OK\r\n",
        &[("new", "t"), ("set", "t")],
    );
    expect(&mut c, e, &["RENAMENX", "s", "t"], ":0\r\n", &[]);
    expect(
        &mut c,
        e,
        &["RENAMENX", "s", "u"],
        ":1\r\n",
        &[("new", "u"), ("rename_from", "s"), ("rename_to", "u")],
    );
    expect(
        &mut c,
        e,
        &["RENAME", "nosuch", "u"],
        "-ERR no such key\r\n",
        &[],
    );

    // Hashes, with the keyspace channel of `h` too.
    expect(
        &mut c,
        e,
        &["HSET", "h", "f", "1", "g", "2"],
        ":2\r\n",
        &[("new", "h"), ("hset", "h")],
    );
    expect(
        &mut c,
        e,
        &["HMSET", "h", "f", "1"],
        "+OK\r\n",
        &[("hset", "h")],
    );
    expect(&mut c, e, &["HSETNX", "h", "f", "x"], ":0\r\n", &[]);
    expect(
        &mut c,
        e,
        &["HSETNX", "h", "z", "1"],
        ":1\r\n",
        &[("hset", "h")],
    );
    expect(
        &mut c,
        e,
        &["HINCRBY", "h", "f", "2"],
        ":3\r\n",
        &[("hincrby", "h")],
    );
    expect(
        &mut c,
        e,
        &["HDEL", "h", "f", "nosuch"],
        ":1\r\n",
        &[("hdel", "h")],
    );
    expect(&mut c, e, &["HDEL", "h", "nosuch"], ":0\r\n", &[]);
    expect(
        &mut c,
        e,
        &["HDEL", "h", "g", "z"],
        ":2\r\n",
        &[("hdel", "h"), ("del", "h")],
    );
    for event in [
        "new", "hset", "hset", "hset", "hincrby", "hdel", "hdel", "del",
    ] {
        assert_eq!(
            space.reply(),
            format!(
                "*3\r\n$7\r\nmessage\r\n$16\r\n__keyspace@0__:h\r\n${}\r\n{event}\r\n",
                event.len()
            )
        );
    }

    // Active expiry: the key goes away without any command, and `expired` says so.
    expect(
        &mut c,
        e,
        &["SET", "x", "1", "PX", "50"],
        "+OK\r\n",
        &[("new", "x"), ("set", "x"), ("expire", "x")],
    );
    assert_eq!(e.reply(), keyevent("expired", "x"));

    // Classes that are off publish nothing; nothing at all without K or E.
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "Eh"]),
        "+OK\r\n"
    );
    expect(&mut c, &mut events, &["SET", "q", "1"], "+OK\r\n", &[]);
    expect(
        &mut c,
        &mut events,
        &["HSET", "hq", "f", "1"],
        ":1\r\n",
        &[("hset", "hq")],
    );
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "A"]),
        "+OK\r\n"
    );
    expect(
        &mut c,
        &mut events,
        &["HSET", "hq", "f", "2"],
        ":0\r\n",
        &[],
    );
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "Eg"]),
        "+OK\r\n"
    );
    expect(
        &mut c,
        &mut events,
        &["DEL", "q"],
        ":1\r\n",
        &[("del", "q")],
    );
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", ""]),
        "+OK\r\n"
    );
    assert_eq!(
        c.call(&["CONFIG", "GET", "notify-keyspace-events"]),
        "*2\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n"
    );
    expect(&mut c, &mut events, &["DEL", "hq"], ":1\r\n", &[]);
    // Nothing else was published: the next thing either subscriber reads is its PING's reply.
    assert_eq!(events.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(space.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_events_match_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, notifications_conversation))
        .await
        .expect("conversation");
}

/// `--notify-keyspace-events` (and its env) sets the classes at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_sets_the_classes_at_start() {
    let node = node_with(|config| {
        config.notify_keyspace_events = KeyspaceEvents::parse("Egx").expect("valid letters");
    })
    .await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        let mut c = Conn::open(address);
        assert_eq!(
            c.call(&["CONFIG", "GET", "notify-keyspace-events"]),
            "*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\ngxE\r\n"
        );
        let mut events = Conn::open(address);
        events.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
        expect(
            &mut c,
            &mut events,
            &["SET", "k", "v", "PX", "30"],
            "+OK\r\n",
            &[("expire", "k")],
        );
        assert_eq!(events.reply(), keyevent("expired", "k"));
    })
    .await
    .expect("conversation");
}

/// The session API's writes are announced as the Redis commands doing the same would: a PUT
/// as `new` (a new session), `hset` and `expire`, a sliding GET as `expire`, a DELETE as `del`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_api_announces_its_writes() {
    let node = node_with(|config| {
        config.notify_keyspace_events = KeyspaceEvents::parse("KEAn").expect("valid letters");
    })
    .await;
    let address = node.resp_addr;
    let mut events = tokio::task::spawn_blocking(move || {
        let mut events = Conn::open(address);
        events.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
        events
    })
    .await
    .expect("subscribed");
    let body = serde_json::json!({"data": {"user": "ada"}, "idleTimeoutSeconds": 60});
    let (status, _) = http(&node, "PUT", "/v1/sessions/abc", Some(body.clone()), None).await;
    assert_eq!(status, 201);
    let (status, _) = http(&node, "PUT", "/v1/sessions/abc", Some(body), None).await;
    assert_eq!(status, 200);
    let (status, _) = http(&node, "GET", "/v1/sessions/abc", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = http(&node, "DELETE", "/v1/sessions/abc", None, None).await;
    assert_eq!(status, 204);
    tokio::task::spawn_blocking(move || {
        for (event, key) in [
            ("new", "session:abc"),
            ("hset", "session:abc"),
            ("expire", "session:abc"),
            ("hset", "session:abc"),
            ("expire", "session:abc"),
            ("expire", "session:abc"),
            ("del", "session:abc"),
        ] {
            assert_eq!(events.reply(), keyevent(event, key));
        }
        assert_eq!(events.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    })
    .await
    .expect("events");
}

/// Sets: the events Redis 7.0.15 publishes for each write (read from it), byte for byte.
fn sets_conversation(address: SocketAddr) {
    let mut c = Conn::open(address);
    assert_eq!(c.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "KEAn"]),
        "+OK\r\n"
    );
    let mut events = Conn::open(address);
    events.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    let e = &mut events;
    let run = |c: &mut Conn, e: &mut Conn, command: &str, expected: &[(&str, &str)]| {
        let args: Vec<&str> = command.split(' ').collect();
        c.call(&args);
        for (event, key) in expected {
            assert_eq!(e.reply(), keyevent(event, key), "{command}: {event} {key}");
        }
    };
    // Sets.
    run(&mut c, e, "SADD s a b", &[("new", "s"), ("sadd", "s")]);
    run(&mut c, e, "SADD s a", &[]);
    run(&mut c, e, "SREM s a x", &[("srem", "s")]);
    run(&mut c, e, "SREM s x", &[]);
    run(&mut c, e, "SADD s2 z", &[("new", "s2"), ("sadd", "s2")]);
    run(
        &mut c,
        e,
        "SMOVE s s2 b",
        &[("srem", "s"), ("del", "s"), ("sadd", "s2")],
    );
    run(&mut c, e, "SMOVE s2 s2 z", &[]);
    run(&mut c, e, "SADD s3 1 2 3", &[("new", "s3"), ("sadd", "s3")]);
    run(&mut c, e, "SPOP s3", &[("spop", "s3")]);
    run(&mut c, e, "SPOP s3 5", &[("spop", "s3"), ("del", "s3")]);
    run(&mut c, e, "SPOP s3", &[]);
    run(&mut c, e, "SADD a 1 2", &[("new", "a"), ("sadd", "a")]);
    run(&mut c, e, "SADD b 2 3", &[("new", "b"), ("sadd", "b")]);
    run(
        &mut c,
        e,
        "SINTERSTORE d a b",
        &[("new", "d"), ("sinterstore", "d")],
    );
    run(&mut c, e, "SUNIONSTORE d a b", &[("sunionstore", "d")]);
    run(&mut c, e, "SDIFFSTORE d a b", &[("sdiffstore", "d")]);
    run(&mut c, e, "SDIFFSTORE d a a", &[("del", "d")]);
    run(&mut c, e, "SINTERSTORE d a nosuch", &[]);
    assert_eq!(e.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_events_match_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, sets_conversation))
        .await
        .expect("conversation");
}

/// Sorted sets (ZADD, ZINCRBY, ZREM, ZPOPMIN, ZPOPMAX): the events Redis 7.0.15 publishes,
/// byte for byte.
fn zsets_conversation(address: SocketAddr) {
    let mut c = Conn::open(address);
    assert_eq!(c.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "KEAn"]),
        "+OK\r\n"
    );
    let mut events = Conn::open(address);
    events.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    let e = &mut events;
    let run = |c: &mut Conn, e: &mut Conn, command: &str, expected: &[(&str, &str)]| {
        let args: Vec<&str> = command.split(' ').collect();
        c.call(&args);
        for (event, key) in expected {
            assert_eq!(e.reply(), keyevent(event, key), "{command}: {event} {key}");
        }
    };
    run(&mut c, e, "ZADD z 1 a 2 b", &[("new", "z"), ("zadd", "z")]);
    run(&mut c, e, "ZADD z 1 a", &[]);
    run(&mut c, e, "ZADD z INCR 5 a", &[("zincr", "z")]);
    run(&mut c, e, "ZINCRBY z 1 b", &[("zincr", "z")]);
    run(&mut c, e, "ZADD z XX 9 c", &[]);
    run(&mut c, e, "ZREM z a x", &[("zrem", "z")]);
    run(&mut c, e, "ZADD z 3 c 4 d 5 e", &[("zadd", "z")]);
    run(&mut c, e, "ZPOPMIN z", &[("zpopmin", "z")]);
    run(&mut c, e, "ZPOPMAX z 5", &[("zpopmax", "z"), ("del", "z")]);
    run(&mut c, e, "ZADD z1 1 a", &[("new", "z1"), ("zadd", "z1")]);
    run(&mut c, e, "ZREM z1 a", &[("zrem", "z1"), ("del", "z1")]);
    assert_eq!(e.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_set_events_match_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, zsets_conversation))
        .await
        .expect("conversation");
}

/// One write command's step of [`WRITES`]: the command, its exact reply, the events it
/// publishes in order.
type Step = (
    &'static [&'static str],
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Every other write command store-node has (lists, ZREMRANGEBY*, ZRANGESTORE, COPY, SORT ...
/// STORE, INCRBYFLOAT, HINCRBYFLOAT, SETRANGE, MSETNX, SMOVE, SPOP, GETEX, GETDEL, APPEND,
/// PERSIST), with empty results and type errors: the replies and events of Redis 7.0.15 (read
/// from it with `notify-keyspace-events KEAn`).
#[rustfmt::skip]
static WRITES: &[Step] = &[
        (&["LPUSH", "l", "a", "b"], ":2\r\n", &[("new", "l"), ("lpush", "l")]),
        (&["RPUSH", "l", "c"], ":3\r\n", &[("rpush", "l")]),
        (&["LPUSHX", "nol", "x"], ":0\r\n", &[]),
        (&["RPUSHX", "l", "d"], ":4\r\n", &[("rpush", "l")]),
        (&["LPUSHX", "l", "z"], ":5\r\n", &[("lpush", "l")]),
        (&["LPOP", "l"], "$1\r\nz\r\n", &[("lpop", "l")]),
        (&["RPOP", "l", "2"], "*2\r\n$1\r\nd\r\n$1\r\nc\r\n", &[("rpop", "l")]),
        (&["LPOP", "l", "0"], "*0\r\n", &[]),
        (&["LPOP", "nol"], "$-1\r\n", &[]),
        (&["LINSERT", "l", "BEFORE", "a", "x"], ":3\r\n", &[("linsert", "l")]),
        (&["LINSERT", "l", "AFTER", "nope", "y"], ":-1\r\n", &[]),
        (&["LINSERT", "nol", "BEFORE", "a", "x"], ":0\r\n", &[]),
        (&["LSET", "l", "0", "q"], "+OK\r\n", &[("lset", "l")]),
        (&["LTRIM", "l", "0", "-1"], "+OK\r\n", &[("ltrim", "l")]),
        (&["LTRIM", "l", "0", "1"], "+OK\r\n", &[("ltrim", "l")]),
        (&["LTRIM", "nol", "0", "1"], "+OK\r\n", &[]),
        (&["LREM", "l", "0", "nope"], ":0\r\n", &[]),
        (&["LREM", "l", "1", "q"], ":1\r\n", &[("lrem", "l")]),
        (&["RPUSH", "m", "1", "2", "3"], ":3\r\n", &[("new", "m"), ("rpush", "m")]),
        (&["LMOVE", "m", "n", "RIGHT", "LEFT"], "$1\r\n3\r\n", &[("new", "n"), ("lpush", "n"), ("rpop", "m")]),
        (&["RPOPLPUSH", "m", "n"], "$1\r\n2\r\n", &[("lpush", "n"), ("rpop", "m")]),
        (&["RPOPLPUSH", "m", "m"], "$1\r\n1\r\n", &[("lpush", "m"), ("rpop", "m")]),
        (&["LMOVE", "m", "n", "LEFT", "RIGHT"], "$1\r\n1\r\n", &[("rpush", "n"), ("lpop", "m"), ("del", "m")]),
        (&["RPOPLPUSH", "nol", "n"], "$-1\r\n", &[]),
        (&["LTRIM", "n", "5", "10"], "+OK\r\n", &[("ltrim", "n"), ("del", "n")]),
        (&["RPUSH", "one", "x"], ":1\r\n", &[("new", "one"), ("rpush", "one")]),
        (&["RPOPLPUSH", "one", "one"], "$1\r\nx\r\n", &[("lpush", "one"), ("rpop", "one")]),
        (&["RPOP", "one"], "$1\r\nx\r\n", &[("rpop", "one"), ("del", "one")]),
        (&["RPUSH", "l2", "a"], ":1\r\n", &[("new", "l2"), ("rpush", "l2")]),
        (&["LREM", "l2", "0", "a"], ":1\r\n", &[("lrem", "l2"), ("del", "l2")]),
        (&["SET", "str", "v"], "+OK\r\n", &[("new", "str"), ("set", "str")]),
        (&["LPUSH", "str", "x"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["LMOVE", "l2", "str", "LEFT", "LEFT"], "$-1\r\n", &[]),
        (&["RPUSH", "src", "v"], ":1\r\n", &[("new", "src"), ("rpush", "src")]),
        (&["LMOVE", "src", "str", "LEFT", "LEFT"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"], ":5\r\n", &[("new", "z"), ("zadd", "z")]),
        (&["ZREMRANGEBYSCORE", "z", "0", "0"], ":0\r\n", &[]),
        (&["ZREMRANGEBYSCORE", "z", "1", "1"], ":1\r\n", &[("zremrangebyscore", "z")]),
        (&["ZREMRANGEBYRANK", "z", "0", "0"], ":1\r\n", &[("zremrangebyrank", "z")]),
        (&["ZREMRANGEBYLEX", "z", "[c", "[c"], ":1\r\n", &[("zremrangebylex", "z")]),
        (&["ZREMRANGEBYLEX", "z", "-", "+"], ":2\r\n", &[("zremrangebylex", "z"), ("del", "z")]),
        (&["ZADD", "z", "1", "a", "2", "b", "3", "c"], ":3\r\n", &[("new", "z"), ("zadd", "z")]),
        (&["ZRANGESTORE", "d", "z", "0", "1"], ":2\r\n", &[("new", "d"), ("zrangestore", "d")]),
        (&["ZRANGESTORE", "d", "z", "0", "0"], ":1\r\n", &[("zrangestore", "d")]),
        (&["ZRANGESTORE", "d", "z", "5", "6"], ":0\r\n", &[("del", "d")]),
        (&["ZRANGESTORE", "d", "z", "5", "6"], ":0\r\n", &[]),
        (&["ZRANGESTORE", "str2", "z", "0", "-1", "BYSCORE"], ":0\r\n", &[]),
        (&["ZRANGESTORE", "str", "z", "0", "-1"], ":3\r\n", &[("zrangestore", "str")]),
        (&["ZRANGESTORE", "d", "nosuch", "0", "-1"], ":0\r\n", &[]),
        (&["COPY", "z", "zc"], ":1\r\n", &[("new", "zc"), ("copy_to", "zc")]),
        (&["COPY", "z", "zc"], ":0\r\n", &[]),
        (&["COPY", "z", "zc", "REPLACE"], ":1\r\n", &[("new", "zc"), ("copy_to", "zc")]),
        (&["COPY", "nosuch", "zc"], ":0\r\n", &[]),
        (&["COPY", "str", "zc", "REPLACE"], ":1\r\n", &[("new", "zc"), ("copy_to", "zc")]),
        (&["RPUSH", "sl", "3", "1", "2"], ":3\r\n", &[("new", "sl"), ("rpush", "sl")]),
        (&["SORT", "sl", "STORE", "so"], ":3\r\n", &[("new", "so"), ("sortstore", "so")]),
        (&["SORT", "sl", "STORE", "so"], ":3\r\n", &[("sortstore", "so")]),
        (&["SORT", "nosuch", "STORE", "so"], ":0\r\n", &[("del", "so")]),
        (&["SORT", "nosuch", "STORE", "so"], ":0\r\n", &[]),
        (&["SORT", "sl"], "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n", &[]),
        (&["INCRBYFLOAT", "f", "1.5"], "$3\r\n1.5\r\n", &[("new", "f"), ("incrbyfloat", "f")]),
        (&["INCRBYFLOAT", "f", "1"], "$3\r\n2.5\r\n", &[("incrbyfloat", "f")]),
        (&["HINCRBYFLOAT", "hf", "x", "1.5"], "$3\r\n1.5\r\n", &[("new", "hf"), ("hincrbyfloat", "hf")]),
        (&["HINCRBYFLOAT", "hf", "x", "1"], "$3\r\n2.5\r\n", &[("hincrbyfloat", "hf")]),
        (&["SETRANGE", "sr", "0", "ab"], ":2\r\n", &[("new", "sr"), ("setrange", "sr")]),
        (&["SETRANGE", "sr", "5", "c"], ":6\r\n", &[("setrange", "sr")]),
        (&["SETRANGE", "nosr", "0", ""], ":0\r\n", &[]),
        (&["MSETNX", "m1", "1", "m2", "2"], ":1\r\n", &[("new", "m1"), ("set", "m1"), ("new", "m2"), ("set", "m2")]),
        (&["MSETNX", "m1", "1", "m3", "2"], ":0\r\n", &[]),
        (&["SADD", "sset", "a"], ":1\r\n", &[("new", "sset"), ("sadd", "sset")]),
        (&["SADD", "sset2", "b"], ":1\r\n", &[("new", "sset2"), ("sadd", "sset2")]),
        (&["SMOVE", "sset", "sset2", "a"], ":1\r\n", &[("srem", "sset"), ("del", "sset"), ("sadd", "sset2")]),
        (&["SPOP", "nosuch"], "$-1\r\n", &[]),
        (&["GETEX", "str2", "EX", "10"], "$-1\r\n", &[]),
        (&["GETDEL", "nosuch"], "$-1\r\n", &[]),
        (&["APPEND", "f", "x"], ":4\r\n", &[("append", "f")]),
        (&["PERSIST", "zc"], ":0\r\n", &[]),
        (&["EXPIRE", "zc", "100"], ":1\r\n", &[("expire", "zc")]),
        (&["PERSIST", "zc"], ":1\r\n", &[("persist", "zc")]),
        (&["SET", "str", "v"], "+OK\r\n", &[("set", "str")]),
        (&["ZREMRANGEBYSCORE", "str", "0", "1"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["ZREMRANGEBYRANK", "str", "0", "1"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["ZREMRANGEBYLEX", "str", "-", "+"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["ZREMRANGEBYSCORE", "nosuch", "0", "1"], ":0\r\n", &[]),
        (&["ZREMRANGEBYSCORE", "z", "x", "1"], "-ERR min or max is not a float\r\n", &[]),
        (&["LSET", "str", "0", "x"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["LSET", "nol", "0", "x"], "-ERR no such key\r\n", &[]),
        (&["LTRIM", "str", "0", "1"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["LREM", "str", "0", "x"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["LINSERT", "str", "BEFORE", "a", "b"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["LPOP", "str"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["ZRANGESTORE", "d", "str", "0", "-1"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["SORT", "str", "STORE", "so"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n", &[]),
        (&["SORT", "sl", "STORE", "str"], ":3\r\n", &[("sortstore", "str")]),
        (&["SET", "str2", "v"], "+OK\r\n", &[("new", "str2"), ("set", "str2")]),
        (&["SORT", "sl", "STORE", "str2"], ":3\r\n", &[("sortstore", "str2")]),
        (&["COPY", "sl", "str2", "REPLACE"], ":1\r\n", &[("new", "str2"), ("copy_to", "str2")]),
        (&["TYPE", "str2"], "+list\r\n", &[]),
        (&["SET", "ttl", "v", "EX", "100"], "+OK\r\n", &[("new", "ttl"), ("set", "ttl"), ("expire", "ttl")]),
        (&["COPY", "ttl", "ttl2"], ":1\r\n", &[("new", "ttl2"), ("copy_to", "ttl2")]),
        (&["COPY", "ttl", "ttl2"], ":0\r\n", &[]),
        (&["RPUSHX", "nol", "a", "b"], ":0\r\n", &[]),
        (&["FLUSHALL"], "+OK\r\n", &[]),
];

fn writes_conversation(address: SocketAddr) {
    let mut c = Conn::open(address);
    assert_eq!(c.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(
        c.call(&["CONFIG", "SET", "notify-keyspace-events", "KEAn"]),
        "+OK\r\n"
    );
    let mut events = Conn::open(address);
    events.call(&["PSUBSCRIBE", "__keyevent@0__:*"]);
    for (command, reply, expected) in WRITES {
        expect(&mut c, &mut events, command, reply, expected);
    }
    // Nothing else was published (FLUSHALL publishes nothing, as in Redis).
    assert_eq!(events.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_command_announces_as_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, writes_conversation))
        .await
        .expect("conversation");
}
