//! Differential test: the same command sequences go to a real `redis-server` (Debian's, started
//! here on a free port and stopped by its PID) and to store-node, over RESP2 and RESP3, and the
//! replies must be byte for byte the same. Replies whose order Redis leaves unspecified (SMEMBERS,
//! HGETALL, ...) are compared as sorted sets of items. store-node runs three ways, as its write
//! path keeps three kinds of state: one node in RAM (values only), one node on disc (stamped),
//! and a member of a two-node cluster (every deletion kept for replication).
//!
//! The reference is the redis-server Debian ships (7.0 on this machine); store-node reports and
//! follows 7.2, so what changed between them is left out here and pinned by unit tests instead:
//! small lists and sets of strings are `listpack` in OBJECT ENCODING, doubles are written in
//! their shortest form (only exactly representable scores appear below), ZRANK takes
//! WITHSCORE. SCAN's paging is the implementation's own (both page through everything).
//!
//! Without `redis-server` on the PATH (or in `REDIS_SERVER`) the test says so and passes,
//! unless `SESSIONSTORE_REQUIRE_REDIS=1` (`make test` sets it and installs Debian's
//! redis-server).

mod cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cluster_support::{free_port, nodes, start_all, Node};
use store_node::protocol::decode::decode;
use store_node::protocol::{Frame, Protocol};

/// A redis-server process, stopped by its PID when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server_binary() -> Option<String> {
    if let Ok(path) = std::env::var("REDIS_SERVER") {
        return Some(path);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

fn start_redis() -> Option<RedisServer> {
    let Some(binary) = redis_server_binary() else {
        assert!(
            std::env::var("SESSIONSTORE_REQUIRE_REDIS").as_deref() != Ok("1"),
            "redis-server is required (SESSIONSTORE_REQUIRE_REDIS=1) but not installed: apt-get install -y redis-server"
        );
        eprintln!("redis-server not installed: the differential test is skipped (apt-get install -y redis-server)");
        return None;
    };
    let port = free_port();
    let child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server starts");
    let server = RedisServer { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// A raw RESP connection.
struct Raw {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Sends one command and returns its reply's bytes and frame.
    fn call(&mut self, args: &[&str]) -> (Vec<u8>, Frame) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out).expect("write");
        loop {
            if let Some((frame, used)) = decode(&self.buffer).expect("a valid reply") {
                let bytes: Vec<u8> = self.buffer.drain(..used).collect();
                return (bytes, frame);
            }
            let mut chunk = [0u8; 65536];
            let read = self.stream.read(&mut chunk).expect("read");
            assert!(read > 0, "connection closed");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// Commands whose replies Redis orders arbitrarily: compared as sorted items.
const UNORDERED: &[&str] = &[
    "smembers", "sinter", "sunion", "sdiff", "hgetall", "hkeys", "hvals", "sscan", "hscan", "keys",
];

fn encoded(frame: &Frame, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(protocol, &mut out);
    out.to_vec()
}

/// The reply with its items sorted (pairs kept together for field/value replies).
fn normalized(command: &str, frame: Frame, protocol: Protocol) -> Vec<u8> {
    let pairs = matches!(command, "hgetall" | "hscan");
    let sort = |items: Vec<Frame>| -> Vec<Frame> {
        if pairs {
            let mut chunks: Vec<Vec<Frame>> = items.chunks(2).map(<[Frame]>::to_vec).collect();
            chunks.sort_by_key(|chunk| format!("{chunk:?}"));
            chunks.into_iter().flatten().collect()
        } else {
            let mut items = items;
            items.sort_by_key(|item| format!("{item:?}"));
            items
        }
    };
    let frame = match frame {
        Frame::Array(items) if command.ends_with("scan") && items.len() == 2 => {
            let mut items = items;
            let page = match items.pop() {
                Some(Frame::Array(page)) => Frame::Array(sort(page)),
                Some(other) => other,
                None => Frame::Null,
            };
            items.push(page);
            Frame::Array(items)
        }
        Frame::Array(items) => Frame::Array(sort(items)),
        Frame::Set(items) => Frame::Set(sort(items)),
        Frame::Map(mut pairs) => {
            pairs.sort_by_key(|pair| format!("{pair:?}"));
            Frame::Map(pairs)
        }
        other => other,
    };
    encoded(&frame, protocol)
}

/// The scripts: each line is one command; the keys are fresh in every server.
fn scripts() -> Vec<Vec<Vec<&'static str>>> {
    let script = |text: &'static str| -> Vec<Vec<&'static str>> {
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| line.split(' ').collect())
            .collect()
    };
    vec![
        script(
            "SET s hello
             GET s
             APPEND s ! 
             STRLEN s
             GETRANGE s 1 3
             GETRANGE s -3 -1
             GETRANGE s 10 20
             SETRANGE s 1 EY
             SETRANGE s 10 x
             GET s
             SETRANGE nope 0 
             SETRANGE s -1 x
             INCR s
             SET n 10
             INCR n
             INCRBY n -20
             DECRBY n 5
             DECR n
             INCRBYFLOAT n 1.5
             INCRBYFLOAT n 0.25
             INCRBYFLOAT n x
             INCR n
             SET f 10.50
             INCRBYFLOAT f 0.1
             INCRBYFLOAT f -5
             SET f 5.0e3
             INCRBYFLOAT f 2.0e2
             INCRBYFLOAT g 3
             INCRBYFLOAT g inf
             SET big 9223372036854775807
             INCR big
             DECRBY big -9223372036854775808
             MSETNX a 1 b 2
             MSETNX b 3 c 4
             MGET a b c
             MSETNX a
             GETDEL a
             GETDEL a",
        ),
        script(
            "HSET h a 1 b 2 c 3
             HSET h a 10
             HGET h a
             HMGET h a x c
             HGETALL h
             HKEYS h
             HVALS h
             HLEN h
             HSTRLEN h a
             HSTRLEN h nope
             HEXISTS h b
             HSETNX h b 5
             HSETNX h d 4
             HINCRBY h a 5
             HINCRBY h n -3
             HINCRBY h a x
             HINCRBYFLOAT h f 1.5
             HINCRBYFLOAT h f 0.25
             HSET h s abc
             HINCRBY h s 1
             HINCRBYFLOAT h s 1
             HDEL h a b zz
             HSCAN h 0
             HSCAN h 0 MATCH [cd] COUNT 1
             HSCAN h x
             HDEL h c d n f s
             EXISTS h
             HGETALL h
             HRANDFIELD h
             HRANDFIELD h 3
             HRANDFIELD h x
             HRANDFIELD h 1 WITHVALUES extra
             SET str v
             HGET str a
             HSET str a 1",
        ),
        script(
            "SADD s a b c a
             SADD s c d
             SCARD s
             SMEMBERS s
             SISMEMBER s b
             SISMEMBER s x
             SMISMEMBER s a x d
             SREM s a x a
             SADD t c d e
             SINTER s t
             SINTER s t nope
             SUNION s t nope
             SDIFF s t
             SDIFF nope s
             SINTERCARD 2 s t
             SINTERCARD 2 s t LIMIT 1
             SINTERCARD 0 s
             SINTERCARD 3 s t
             SINTERSTORE u s t
             SMEMBERS u
             SUNIONSTORE u s t
             SCARD u
             SDIFFSTORE u s s
             EXISTS u
             SMOVE s t b
             SMOVE s t b
             SMOVE nope t b
             SMEMBERS s
             SMEMBERS t
             SSCAN t 0
             SSCAN t 0 MATCH [de]
             SPOP t 0
             SPOP nope
             SPOP nope 2
             SPOP t -1
             SPOP t x
             SRANDMEMBER nope
             SRANDMEMBER nope 5
             SRANDMEMBER s x
             SRANDMEMBER s -9223372036854775808
             SADD ints 1 2 3
             OBJECT ENCODING ints
             SET str v
             SADD str a
             SINTER t str
             SMOVE t str c
             SUNIONSTORE str t
             TYPE str
             SMEMBERS str",
        ),
        script(
            "ZADD z 1 a 2 b
             ZADD z NX 5 a 3 c
             ZSCORE z a
             ZADD z XX CH 7 a 9 d
             ZSCORE z d
             ZADD z GT CH 5 a 8 b
             ZADD z LT 1 a
             ZMSCORE z a b x
             ZADD z INCR 2.5 a
             ZADD z NX INCR 1 a
             ZADD z XX INCR 1 nope
             ZINCRBY z 1.5 a
             ZINCRBY z 2 new
             ZINCRBY z x new
             ZADD z NX XX 1 a
             ZADD z GT LT 1 a
             ZADD z NX GT 1 a
             ZADD z INCR 1 a 2 b
             ZADD z NX 1
             ZADD z x a
             ZADD z inf i
             ZINCRBY z -inf i
             ZADD z -inf j
             ZCARD z
             ZRANGE z 0 -1 WITHSCORES
             ZRANGE z 0 -1 REV WITHSCORES
             ZRANGE z -2 100
             ZRANGE z 3 1
             ZRANGE z (1 8 BYSCORE
             ZRANGE z 8 (1 BYSCORE REV LIMIT 1 2
             ZRANGE z -inf +inf BYSCORE LIMIT 2 -1 WITHSCORES
             ZRANGE z 0 1 LIMIT 0 1
             ZRANGE z - + BYLEX WITHSCORES
             ZRANGE z x 1 BYSCORE
             ZRANGE z a 1 BYLEX
             ZRANGE z 0 x
             ZRANGEBYSCORE z 2 +inf WITHSCORES
             ZRANGEBYSCORE z (2 (8 LIMIT 0 1
             ZREVRANGEBYSCORE z 8 2
             ZREVRANGE z 0 1 WITHSCORES
             ZCOUNT z (2 +inf
             ZCOUNT z x 1
             ZRANK z c
             ZREVRANK z c
             ZRANK z nope
             ZREM z i j x i
             ZRANGESTORE dst z 1 2
             ZRANGE dst 0 -1 WITHSCORES
             ZRANGESTORE dst z 100 200
             EXISTS dst
             ZREMRANGEBYSCORE z -inf (2
             ZREMRANGEBYRANK z -1 -1
             ZRANGE z 0 -1 WITHSCORES
             ZPOPMIN z
             ZPOPMAX z 2
             ZPOPMIN z
             ZPOPMIN nope
             ZPOPMAX nope 3
             ZPOPMAX z -1
             ZPOPMIN z x
             ZADD lex 0 a 0 b 0 c 0 d 0 e
             ZRANGEBYLEX lex [b (d
             ZREVRANGEBYLEX lex + [d
             ZRANGEBYLEX lex - + LIMIT 1 2
             ZLEXCOUNT lex [b +
             ZREMRANGEBYLEX lex [c [d
             ZRANGE lex 0 -1
             ZRANGEBYLEX lex b c
             ZSCAN lex 0
             SET str v
             ZADD str 1 a
             ZRANGE str 0 1
             ZRANGE str 0 x",
        ),
        script(
            "RPUSH l a b c
             LPUSH l z y
             LRANGE l 0 -1
             LRANGE l -2 100
             LRANGE l 5 1
             LPUSHX nope x
             RPUSHX l end
             LLEN l
             LINDEX l -1
             LINDEX l 99
             LINDEX l x
             LSET l 1 Z
             LSET l 99 Z
             LSET nope 0 Z
             LINSERT l BEFORE a x
             LINSERT l AFTER c after
             LINSERT l AFTER nope x
             LINSERT nope AFTER a x
             LINSERT l SIDEWAYS a x
             LRANGE l 0 -1
             LPOS l b
             RPUSH l b b
             LPOS l b RANK -1 COUNT 2
             LPOS l b COUNT 0 MAXLEN 6
             LPOS l b RANK 0
             LPOS l nope
             LPOS l nope COUNT 1
             LPOS nope x COUNT 1
             LREM l -2 b
             LREM l 0 nope
             LPOP l
             RPOP l 2
             RPOP nope 2
             RPOP nope
             LPOP l 0
             LPOP l -1
             LPOP l 1 2
             LPOP l x
             LTRIM l 1 -1
             LRANGE l 0 -1
             LMOVE l m RIGHT LEFT
             RPOPLPUSH l l
             LRANGE l 0 -1
             LMOVE l m UP LEFT
             LMOVE nope m LEFT LEFT
             LTRIM l 5 10
             EXISTS l
             SET s v
             LMOVE m s LEFT LEFT
             LPUSH s x
             RPUSH r 3 1 2 10
             SORT r
             SORT r DESC LIMIT 1 2
             SORT r ALPHA
             SORT r BY nosort
             SORT r STORE out
             LRANGE out 0 -1
             SADD abc b a c
             SORT abc ALPHA
             SORT abc
             SORT s",
        ),
        script(
            "SET a 1
             HSET h f v
             RPUSH l x
             COPY a b
             COPY a b
             COPY a b REPLACE
             COPY a a
             COPY nope b
             COPY h h2
             HGETALL h2
             COPY l l2
             LRANGE l2 0 -1
             TYPE l2
             OBJECT ENCODING a
             OBJECT ENCODING h
             OBJECT ENCODING nope
             OBJECT REFCOUNT a
             SET long 0123456789012345678901234567890123456789012345678
             OBJECT ENCODING long
             SET short abc
             OBJECT ENCODING short
             OBJECT FOO a
             OBJECT FREQ a
             WATCH a
             UNWATCH
             MULTI
             WATCH a
             SET a 2
             UNWATCH
             EXEC
             GET a",
        ),
    ]
}

/// Runs every script on `node` and on `redis` with `protocol`; returns the mismatches.
fn compare(node_port: u16, redis: &RedisServer, protocol: Protocol, label: &str) -> Vec<String> {
    let mut mismatches = Vec::new();
    for script in scripts() {
        let mut mine = Raw::connect(node_port);
        let mut theirs = Raw::connect(redis.port);
        for connection in [&mut mine, &mut theirs] {
            connection.call(&["FLUSHALL"]);
            if protocol == Protocol::Resp3 {
                connection.call(&["HELLO", "3"]);
            }
        }
        for command in &script {
            let name = command[0].to_ascii_lowercase();
            let (mine_bytes, mine_frame) = mine.call(command);
            let (their_bytes, their_frame) = theirs.call(command);
            let (mine_bytes, their_bytes) = if UNORDERED.contains(&name.as_str()) {
                (
                    normalized(&name, mine_frame, protocol),
                    normalized(&name, their_frame, protocol),
                )
            } else {
                (mine_bytes, their_bytes)
            };
            if mine_bytes != their_bytes {
                mismatches.push(format!(
                    "{label} {protocol:?} `{}`:\n  store-node: {:?}\n  redis:      {:?}",
                    command.join(" "),
                    String::from_utf8_lossy(&mine_bytes),
                    String::from_utf8_lossy(&their_bytes)
                ));
            }
        }
    }
    mismatches
}

fn run(node: &Node, redis: &RedisServer, label: &str) -> Vec<String> {
    let mut mismatches = compare(node.resp, redis, Protocol::Resp2, label);
    mismatches.extend(compare(node.resp, redis, Protocol::Resp3, label));
    mismatches
}

#[test]
fn replies_match_redis_server_byte_for_byte() {
    let Some(redis) = start_redis() else {
        return;
    };
    let mut mismatches = Vec::new();

    let mut ram = Node::new(0);
    ram.start(&[], &[]);
    ram.wait_ready(Duration::from_secs(30));
    mismatches.extend(run(&ram, &redis, "one node in RAM"));
    drop(ram);

    let dir = std::env::temp_dir().join(format!("store-node-differential-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let mut disc = Node::new(1);
    disc.start(
        &[],
        &[
            "--storage-mode",
            "disc",
            "--data-dir",
            &dir.display().to_string(),
        ],
    );
    disc.wait_ready(Duration::from_secs(30));
    mismatches.extend(run(&disc, &redis, "one node on disc"));
    drop(disc);
    let _ = std::fs::remove_dir_all(&dir);

    let (mut cluster, peers) = nodes(2);
    start_all(&mut cluster, &peers, &["--write-ack", "one"]);
    mismatches.extend(run(&cluster[0], &redis, "a cluster member"));

    assert!(
        mismatches.is_empty(),
        "{} replies differ from redis-server:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
