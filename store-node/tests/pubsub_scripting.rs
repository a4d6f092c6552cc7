//! Pub/sub and Lua scripting over real TCP, byte for byte: each conversation runs against an
//! in-process node and, where Debian's `redis-server` is installed, against a real Redis
//! started on a free loopback port in the same run; both must give the exact bytes written
//! here. Also: a script that loops forever (BUSY for others, SCRIPT KILL ends it) and a slow
//! subscriber (disconnected past its output buffer limit while the publisher goes on); the INFO
//! fields and /metrics that count subscribers, messages and scripts; FUNCTION/FCALL absent.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::versus_redis::{against_both, Conn};
use common::{command, node};

fn pubsub_conversation(address: SocketAddr) {
    let mut a = Conn::open(address);
    let mut b = Conn::open(address);
    a.send(&["SUBSCRIBE", "a", "b"]);
    assert_eq!(a.reply(), "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
    assert_eq!(a.reply(), "*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
    assert_eq!(
        a.call(&["GET", "x"]),
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(a.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(a.call(&["PING", "hi"]), "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");
    assert_eq!(
        a.call(&["PSUBSCRIBE", "p*"]),
        "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n"
    );
    assert_eq!(b.call(&["PUBLISH", "a", "hello"]), ":1\r\n");
    assert_eq!(
        a.reply(),
        "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n"
    );
    assert_eq!(b.call(&["PUBLISH", "pq", "m"]), ":1\r\n");
    assert_eq!(
        a.reply(),
        "*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npq\r\n$1\r\nm\r\n"
    );
    assert_eq!(b.call(&["PUBLISH", "other", "m"]), ":0\r\n");
    assert_eq!(
        b.call(&["PUBSUB", "NUMSUB", "a", "zz"]),
        "*4\r\n$1\r\na\r\n:1\r\n$2\r\nzz\r\n:0\r\n"
    );
    assert_eq!(b.call(&["PUBSUB", "NUMPAT"]), ":1\r\n");
    assert_eq!(b.call(&["PUBSUB", "CHANNELS", "a*"]), "*1\r\n$1\r\na\r\n");
    assert_eq!(
        a.call(&["UNSUBSCRIBE", "a"]),
        "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n"
    );
    assert_eq!(
        a.call(&["PUNSUBSCRIBE"]),
        "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:1\r\n"
    );
    assert_eq!(
        a.call(&["UNSUBSCRIBE"]),
        "*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"
    );
    assert_eq!(
        a.call(&["UNSUBSCRIBE"]),
        "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
    );
    assert_eq!(a.call(&["GET", "x"]), "$-1\r\n");

    // RESP3: pushes, and commands while subscribed.
    let mut c = Conn::open(address);
    c.call(&["HELLO", "3"]);
    assert_eq!(
        c.call(&["SUBSCRIBE", "c"]),
        ">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    );
    assert_eq!(b.call(&["PUBLISH", "c", "x"]), ":1\r\n");
    assert_eq!(c.reply(), ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n");
    assert_eq!(c.call(&["GET", "x"]), "_\r\n");
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    assert_eq!(
        c.call(&["SSUBSCRIBE", "s"]),
        ">3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n"
    );
    assert_eq!(b.call(&["SPUBLISH", "s", "m"]), ":1\r\n");
    assert_eq!(c.reply(), ">3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nm\r\n");
    assert_eq!(
        c.call(&["UNSUBSCRIBE", "c"]),
        ">3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n"
    );
    assert_eq!(
        c.call(&["SUNSUBSCRIBE"]),
        ">3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"
    );
    assert_eq!(
        c.call(&["PUNSUBSCRIBE"]),
        ">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n"
    );
    assert_eq!(
        b.call(&["PUBSUB", "FOO"]),
        "-ERR unknown subcommand 'FOO'. Try PUBSUB HELP.\r\n"
    );
    assert_eq!(
        b.call(&["PUBLISH", "a"]),
        "-ERR wrong number of arguments for 'publish' command\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_replies_and_messages_match_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, pubsub_conversation))
        .await
        .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

/// (request, exact reply) pairs, in order, on one RESP2 connection.
const SCRIPTS: &[(&[&str], &str)] = &[
    (&["EVAL", "return redis.call('set', KEYS[1], ARGV[1])", "1", "k", "v"], "+OK\r\n"),
    (&["EVAL", "return redis.call('get', KEYS[1])", "1", "k"], "$1\r\nv\r\n"),
    (&["EVAL", "return {1, 'x', {ok='y'}, {err='z'}, 3.99, -3.7, true, false}", "0"], "*8\r\n:1\r\n$1\r\nx\r\n+y\r\n-z\r\n:3\r\n:-3\r\n:1\r\n$-1\r\n"),
    (&["EVAL", "return {1,2,3,'a',nil,4}", "0"], "*4\r\n:1\r\n:2\r\n:3\r\n$1\r\na\r\n"),
    (&["EVAL", "return 2^63", "0"], ":-9223372036854775808\r\n"),
    (&["EVAL", "return tostring(2^53)", "0"], "$18\r\n9.007199254741e+15\r\n"),
    (&["EVAL", "return redis.error_reply('My Error')", "0"], "-My Error\r\n"),
    (&["EVAL", "return redis.status_reply('FINE')", "0"], "+FINE\r\n"),
    (&["EVAL", "return redis.pcall('incr', KEYS[1])", "1", "k"], "-ERR value is not an integer or out of range\r\n"),
    (&["EVAL", "local ok, e = pcall(redis.call, 'incr', KEYS[1]) return e", "1", "k"], "$43\r\nERR value is not an integer or out of range\r\n"),
    (&["EVAL", "return redis.call('incr', KEYS[1])", "1", "k"], "-ERR value is not an integer or out of range script: 2bab3b661081db58bd2341920e0ba7cf5dc77b25, on @user_script:1.\r\n"),
    (&["EVAL", "return redis.call('nope')", "0"], "-ERR Unknown Redis command called from script script: f01f0776df71cc5b400c2268135aa7f30dce2e53, on @user_script:1.\r\n"),
    (&["EVAL", "return redis.call('get')", "0"], "-ERR Wrong number of args calling Redis command from script script: f187dee77f607f7cff00bbabc9df38507582c78d, on @user_script:1.\r\n"),
    (&["EVAL", "return redis.call('eval','return 1', 0)", "0"], "-ERR This Redis command is not allowed from script script: 498b5081e21f7e3039493da0ab415ae08f116868, on @user_script:1.\r\n"),
    (&["EVAL", "x = 1", "0"], "-ERR user_script:1: Attempt to modify a readonly table script: 34bce5f775de97f557a34088509c8bfe1ea17e52, on @user_script:1.\r\n"),
    (&["EVAL", "return x", "0"], "-ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: 03c387736bb5cc009ff35151572cee04677aa374, on @user_script:1.\r\n"),
    (&["EVAL", "return os", "0"], "-ERR user_script:1: Script attempted to access nonexistent global variable 'os' script: f03b5ad6e7d58786b6a5e879efbea4a4408f5c2f, on @user_script:1.\r\n"),
    (&["EVAL", "return loadfile", "0"], "-ERR user_script:1: Script attempted to access nonexistent global variable 'loadfile' script: a08fbe72c95f67027cc9b6349f5d335b598397b7, on @user_script:1.\r\n"),
    (&["EVAL", "require('x')", "0"], "-ERR user_script:1: Script attempted to access nonexistent global variable 'require' script: 1593ee57f8fdca29ee4a3db76d97c02d243f0c57, on @user_script:1.\r\n"),
    (&["EVAL", "error('boom')", "0"], "-ERR user_script:1: boom script: 82903a0434f1503e152f89c03c9acd881a0e8150, on @user_script:1.\r\n"),
    (&["EVAL", "error('plain', 0)", "0"], "-ERR plain script: 387cc53bb438ce5ef3624b302bc007b5d946b504, on @user_script:1.\r\n"),
    (&["EVAL", "error({err='MY custom'})", "0"], "-MY custom script: 784d3ae9e6566ecb57138d89d618d989007a9bc6, on @user_script:1.\r\n"),
    (&["EVAL", "return redis.setresp(4)", "0"], "-ERR RESP version must be 2 or 3. script: 921c0a48021d97dfd5884aeea41875972c7804d9, on @user_script:1.\r\n"),
    (&["EVAL", "this is bad", "0"], "-ERR Error compiling script (new function): user_script:1: '=' expected near 'is'\r\n"),
    (&["EVAL_RO", "return redis.call('set','a','b')", "0"], "-ERR Write commands are not allowed from read-only scripts. script: ff967d0ae0e68b4f9e360fa91c54598bc25ad9b6, on @user_script:1.\r\n"),
    (&["EVAL", "return 1", "-1"], "-ERR Number of keys can't be negative\r\n"),
    (&["EVAL", "return 1", "2", "a"], "-ERR Number of keys can't be greater than number of args\r\n"),
    (&["EVAL", "return 1", "x"], "-ERR value is not an integer or out of range\r\n"),
    (&["EVALSHA", "0000000000000000000000000000000000000000", "0"], "-NOSCRIPT No matching script. Please use EVAL.\r\n"),
    (&["SCRIPT", "LOAD", "return 1"], "$40\r\ne0e1f9fabfc9d4800c877a703b823ac0578ff8db\r\n"),
    (&["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"], ":1\r\n"),
    (&["SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "abc"], "*2\r\n:1\r\n:0\r\n"),
    (&["SCRIPT", "FLUSH"], "+OK\r\n"),
    (&["SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"], "*1\r\n:0\r\n"),
    (&["SCRIPT", "KILL"], "-NOTBUSY No scripts in execution right now.\r\n"),
    (&["SCRIPT", "FOO"], "-ERR unknown subcommand 'FOO'. Try SCRIPT HELP.\r\n"),
    (&["EVAL", "return redis.sha1hex('')", "0"], "$40\r\nda39a3ee5e6b4b0d3255bfef95601890afd80709\r\n"),
    (&["EVAL", "return cjson.encode({1,2,3,'a/b'})", "0"], "$14\r\n[1,2,3,\"a\\/b\"]\r\n"),
    (&["EVAL", "return cjson.encode({a={}})", "0"], "$8\r\n{\"a\":{}}\r\n"),
    (&["EVAL", "return cjson.decode('[1,2,{\"a\":\"b\"}]')[3].a", "0"], "$1\r\nb\r\n"),
    (&["EVAL", "return cjson.encode(cjson.decode('{\"x\":null}'))", "0"], "$10\r\n{\"x\":null}\r\n"),
    (&["EVAL", "return cjson.encode(0.1)", "0"], "$3\r\n0.1\r\n"),
    (&["EVAL", "return bit.tohex(bit.band(0xff, 0x0f))", "0"], "$8\r\n0000000f\r\n"),
    (&["EVAL", "return {bit.bor(1, 2, 4), bit.lshift(1, 31), bit.bxor(-1, 1), bit.rshift(-1, 28)}", "0"], "*4\r\n:7\r\n:-2147483648\r\n:-2\r\n:15\r\n"),
    (&["HSET", "h", "a", "1"], ":1\r\n"),
    (&["EVAL", "return redis.call('hgetall', 'h')", "0"], "*2\r\n$1\r\na\r\n$1\r\n1\r\n"),
    (&["EVAL", "return {double=3.5}", "0"], "$3\r\n3.5\r\n"),
    (&["HELLO", "3"], ""),
    (&["EVAL", "redis.setresp(3); return redis.call('hgetall', 'h')", "0"], "%1\r\n$1\r\na\r\n$1\r\n1\r\n"),
    (&["EVAL", "redis.setresp(3); return redis.call('get', 'nokey') == nil", "0"], "#t\r\n"),
    (&["EVAL", "return redis.call('get', 'nokey') == false", "0"], ":1\r\n"),
    (&["EVAL", "return {double=3.5}", "0"], ",3.5\r\n"),
    (&["EVAL", "return {map={a=1}}", "0"], "%1\r\n$1\r\na\r\n:1\r\n"),
    (&["EVAL", "return {set={a=true}}", "0"], "~1\r\n$1\r\na\r\n"),
    (&["EVAL", "return {big_number='123'}", "0"], "(123\r\n"),
    (&["EVAL", "return nil", "0"], "_\r\n"),
    (&["EVAL", "redis.setresp(3); return false", "0"], "#f\r\n"),
];

fn script_conversation(address: SocketAddr) {
    let mut conn = Conn::open(address);
    for (request, expected) in SCRIPTS {
        let reply = conn.call(request);
        if !expected.is_empty() {
            assert_eq!(reply, *expected, "reply to {request:?} from {address}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reply_like_redis_byte_for_byte() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, script_conversation))
        .await
        .expect("conversation");
    node.shutdown().await.expect("shutdown");
}

fn busy_conversation(address: SocketAddr) {
    let mut runner = Conn::open(address);
    let mut other = Conn::open(address);
    assert_eq!(
        other.call(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        "+OK\r\n"
    );
    runner.send(&["EVAL", "local i = 0 while true do i = i + 1 end", "0"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = other.call(&["PING"]);
        if reply.starts_with("-BUSY") {
            assert_eq!(
                reply,
                "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
            );
            break;
        }
        assert_eq!(reply, "+PONG\r\n", "before the script runs");
        assert!(Instant::now() < deadline, "never BUSY");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(other.call(&["SCRIPT", "KILL"]), "+OK\r\n");
    assert_eq!(
        runner.reply(),
        "-ERR Script killed by user with SCRIPT KILL... script: 3fcf51a9b854b8f66cb8685600b0d7df968f4398, on @user_script:1.\r\n"
    );
    assert_eq!(other.call(&["PING"]), "+PONG\r\n");
    assert_eq!(runner.call(&["SET", "after", "1"]), "+OK\r\n");
    // A script that wrote cannot be killed.
    runner.send(&[
        "EVAL",
        "redis.call('set', 'w', '1') local i = 0 while i < 30000000 do i = i + 1 end return i",
        "0",
    ]);
    loop {
        let reply = other.call(&["PING"]);
        if reply.starts_with("-BUSY") {
            break;
        }
        if runner_done(&mut runner) {
            // The machine ran the loop before a PING saw it busy: nothing to assert.
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        other.call(&["SCRIPT", "KILL"]),
        "-UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.\r\n"
    );
    assert_eq!(runner.reply(), ":30000000\r\n");
}

fn runner_done(conn: &mut Conn) -> bool {
    conn.stream.set_nonblocking(true).expect("nonblocking");
    let mut chunk = [0u8; 64];
    let done = matches!(conn.stream.peek(&mut chunk), Ok(read) if read > 0);
    conn.stream.set_nonblocking(false).expect("blocking");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_the_busy_threshold_is_killed_and_the_node_keeps_serving() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, busy_conversation))
        .await
        .expect("conversation");
    let metrics = common::http(&node, "GET", "/metrics", None, None).await.1;
    assert!(
        metrics.contains("store_node_scripts_killed_total 1\n"),
        "{metrics}"
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_disconnected_and_the_publisher_never_waits() {
    let node = node().await;
    let address = node.resp_addr;
    let publisher_time = tokio::task::spawn_blocking(move || {
        let mut publisher = Conn::open(address);
        assert_eq!(
            publisher.call(&[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "pubsub 1mb 0 0"
            ]),
            "+OK\r\n"
        );
        let mut slow = Conn::open(address);
        slow.call(&["SUBSCRIBE", "news"]);
        let mut fast = Conn::open(address);
        fast.call(&["SUBSCRIBE", "news"]);
        let message = "x".repeat(256 * 1024);
        let started = Instant::now();
        let mut receivers = Vec::new();
        // 64 MiB: past the socket buffers (the kernel may hold tens of MiB on loopback) and the
        // 1 MiB queue. The fast subscriber reads as it goes.
        for _ in 0..256 {
            receivers.push(publisher.call(&["PUBLISH", "news", &message]));
            let message_reply = fast.reply();
            assert!(message_reply.ends_with(&format!("{message}\r\n")));
        }
        let elapsed = started.elapsed();
        assert_eq!(receivers.first().map(String::as_str), Some(":2\r\n"));
        assert_eq!(receivers.last().map(String::as_str), Some(":1\r\n"));
        // The slow subscriber's connection is closed after what it was sent.
        slow.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut sink = vec![0u8; 1 << 20];
        let closed = loop {
            match slow.stream.read(&mut sink) {
                Ok(0) | Err(_) => break true,
                Ok(_) => continue,
            }
        };
        assert!(closed);
        elapsed
    })
    .await
    .expect("publisher");
    eprintln!("256 publishes of 256 KiB with a stuck subscriber: {publisher_time:?}");
    let metrics = common::http(&node, "GET", "/metrics", None, None).await.1;
    assert!(
        metrics.contains("store_node_pubsub_slow_subscribers_disconnected_total 1\n"),
        "{metrics}"
    );
    let info = {
        let mut conn = common::Raw::connect(&node).await;
        conn.send(&command(&["INFO", "stats"])).await;
        format!("{:?}", conn.frame().await)
    };
    assert!(
        info.contains("client_output_buffer_limit_disconnections:1"),
        "{info}"
    );
    node.shutdown().await.expect("shutdown");
}

/// The value of `field` in an INFO reply (`field:value` lines).
fn info_field(info: &str, field: &str) -> Option<String> {
    info.split("\r\n")
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(str::to_string)
}

/// Two subscribers (channels `a` and `b`, channel `a`, pattern `n*`), three publications and
/// three scripts (one failing, one only loaded), then the INFO fields Redis names for them.
fn counted_conversation(address: SocketAddr) {
    let mut first = Conn::open(address);
    first.call(&["SUBSCRIBE", "a", "b"]);
    first.reply();
    assert_eq!(
        first.call(&["PSUBSCRIBE", "n*"]),
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n"
    );
    let mut second = Conn::open(address);
    second.call(&["SUBSCRIBE", "a"]);
    let mut conn = Conn::open(address);
    assert_eq!(conn.call(&["PUBLISH", "a", "m"]), ":2\r\n");
    assert_eq!(conn.call(&["PUBLISH", "news", "m"]), ":1\r\n");
    assert_eq!(conn.call(&["PUBLISH", "other", "m"]), ":0\r\n");
    assert_eq!(
        first.reply(),
        "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n"
    );
    assert_eq!(
        first.reply(),
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nm\r\n"
    );
    assert_eq!(
        second.reply(),
        "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n"
    );
    assert_eq!(conn.call(&["SCRIPT", "FLUSH"]), "+OK\r\n");
    assert_eq!(conn.call(&["EVAL", "return 1", "0"]), ":1\r\n");
    assert!(conn
        .call(&["EVAL", "return redis.call('nosuch')", "0"])
        .starts_with("-ERR Unknown Redis command called from script"));
    assert_eq!(
        conn.call(&["SCRIPT", "LOAD", "return 2"]),
        "$40\r\n7f923f79fe76194c868d7e1d0820de36700eb649\r\n"
    );
    let stats = conn.call(&["INFO", "stats"]);
    assert_eq!(info_field(&stats, "pubsub_channels").as_deref(), Some("2"));
    assert_eq!(info_field(&stats, "pubsub_patterns").as_deref(), Some("1"));
    assert_eq!(
        info_field(&stats, "pubsubshard_channels").as_deref(),
        Some("0")
    );
    let memory = conn.call(&["INFO", "memory"]);
    assert_eq!(
        info_field(&memory, "number_of_cached_scripts").as_deref(),
        Some("3")
    );
    let lua = info_field(&memory, "used_memory_lua").and_then(|value| value.parse::<u64>().ok());
    assert!(lua.is_some_and(|bytes| bytes > 0), "{memory}");
    // Answered, so the node holds no subscriptions of this conversation any more.
    assert_eq!(first.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(second.call(&["RESET"]), "+RESET\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_metrics_count_subscribers_messages_and_scripts() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || against_both(address, counted_conversation))
        .await
        .expect("conversation");
    // The conversation's subscribers were reset: what /metrics counts for them is checked
    // while a fresh one is subscribed.
    let (info, metrics) = {
        let mut first = common::Raw::connect(&node).await;
        first.send(&command(&["SUBSCRIBE", "a", "b"])).await;
        first.frame().await;
        first.frame().await;
        first.send(&command(&["PSUBSCRIBE", "n*"])).await;
        first.frame().await;
        let mut conn = common::Raw::connect(&node).await;
        conn.send(&command(&["INFO", "clients"])).await;
        let info = format!("{:?}", conn.frame().await);
        let metrics = common::http(&node, "GET", "/metrics", None, None).await.1;
        (info, metrics)
    };
    assert!(info.contains("pubsub_clients:1\\r\\n"), "{info}");
    for line in [
        "store_node_pubsub_subscribers 1\n",
        "store_node_pubsub_channels 2\n",
        "store_node_pubsub_patterns 1\n",
        "store_node_pubsub_messages_published_total 3\n",
        "store_node_pubsub_messages_delivered_total 3\n",
        "store_node_pubsub_messages_dropped_total 0\n",
        "store_node_scripts_run_total 2\n",
        "store_node_scripts_failed_total 1\n",
        "store_node_scripts_killed_total 0\n",
        "store_node_scripts_cached 3\n",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from\n{metrics}");
    }
    let seconds = metrics
        .lines()
        .find_map(|line| line.strip_prefix("store_node_scripts_duration_seconds_total "))
        .and_then(|value| value.parse::<f64>().ok());
    assert!(seconds.is_some_and(|value| value > 0.0), "{metrics}");
    node.shutdown().await.expect("shutdown");
}

/// `FUNCTION`/`FCALL` (Redis 7 functions) are not there, as the README says: they answer as
/// any unknown command, so a client library sees at once that it must use `EVAL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_and_fcall_answer_unknown_command() {
    let node = node().await;
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        let mut conn = Conn::open(address);
        assert_eq!(
            conn.call(&["FUNCTION", "LIST"]),
            "-ERR unknown command 'FUNCTION', with args beginning with: 'LIST' \r\n"
        );
        assert_eq!(
            conn.call(&["FCALL", "f", "0"]),
            "-ERR unknown command 'FCALL', with args beginning with: 'f' '0' \r\n"
        );
    })
    .await
    .expect("conversation");
    node.shutdown().await.expect("shutdown");
}
