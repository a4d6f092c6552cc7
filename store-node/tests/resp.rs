//! RESP over real TCP: the `redis` crate and raw bytes against an in-process node.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{client, command, node, node_with, Raw};
use redis::AsyncCommands;

#[tokio::test]
async fn redis_crate_core_commands() {
    let node = node().await;
    let mut con = client(&node).await;
    let _: () = con.set("k", "v").await.unwrap();
    let value: Option<String> = con.get("k").await.unwrap();
    assert_eq!(value.as_deref(), Some("v"));
    let set: bool = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .arg("NX")
        .query_async::<Option<String>>(&mut con)
        .await
        .unwrap()
        .is_some();
    assert!(!set);
    let _: () = con.set_ex("s", "x", 100).await.unwrap();
    let ttl: i64 = con.ttl("s").await.unwrap();
    assert_eq!(ttl, 100);
    let _: () = con
        .hset_multiple("h", &[("a", "1"), ("b", "2")])
        .await
        .unwrap();
    let all: HashMap<String, String> = con.hgetall("h").await.unwrap();
    assert_eq!(
        all,
        HashMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
    );
    let values: Vec<Option<String>> = con.mget(&["k", "nope", "s"]).await.unwrap();
    assert_eq!(
        values,
        vec![Some("v".to_string()), None, Some("x".to_string())]
    );
    let incremented: i64 = con.incr("n", 5).await.unwrap();
    assert_eq!(incremented, 5);
    let removed: i64 = con.del(&["k", "s", "missing"]).await.unwrap();
    assert_eq!(removed, 2);
    let error = redis::cmd("GET")
        .arg("h")
        .query_async::<Option<String>>(&mut con)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("WRONGTYPE"));
    let error = redis::cmd("RENAME")
        .arg("nope")
        .arg("x")
        .query_async::<()>(&mut con)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no such key"), "{error}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn redis_crate_over_resp3() {
    let node = node().await;
    let url = format!("redis://{}/?protocol=resp3", node.resp_addr);
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = con.hset("h", "f", "v").await.unwrap();
    let all: HashMap<String, String> = con.hgetall("h").await.unwrap();
    assert_eq!(all, HashMap::from([("f".into(), "v".into())]));
    let missing: Option<String> = con.get("missing").await.unwrap();
    assert_eq!(missing, None);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn raw_inline_pipelining_and_resp3() {
    let node = node().await;
    let mut raw = Raw::connect(&node).await;
    raw.expect(b"PING\r\n", b"+PONG\r\n").await;
    raw.expect(b"SET a \"b c\"\r\nGET a\r\n", b"+OK\r\n$3\r\nb c\r\n")
        .await;
    raw.expect(b"\r\n\r\nECHO x\r\n", b"$1\r\nx\r\n").await;
    // 200 pipelined commands in one write, answered in order.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for index in 0..100 {
        batch.extend(command(&["SET", &format!("p{index}"), &index.to_string()]));
        batch.extend(command(&["GET", &format!("p{index}")]));
        expected.extend(b"+OK\r\n");
        expected.extend(format!("${}\r\n{}\r\n", index.to_string().len(), index).as_bytes());
    }
    raw.expect(&batch, &expected).await;
    // A command split across writes.
    raw.send(b"*2\r\n$3\r\nGET\r\n$2\r").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.expect(b"\np7\r\n", b"$1\r\n7\r\n").await;
    // RESP2 nulls, then RESP3.
    raw.expect(&command(&["GET", "nope"]), b"$-1\r\n").await;
    raw.expect(&command(&["HGETALL", "nope"]), b"*0\r\n").await;
    raw.send(&command(&["HELLO", "3"])).await;
    let hello = raw.frame().await;
    let store_node::protocol::Frame::Map(pairs) = hello else {
        panic!("HELLO 3 must answer a map, got {hello:?}")
    };
    assert_eq!(pairs.len(), 7);
    assert_eq!(pairs[2].1, store_node::protocol::Frame::Integer(3));
    raw.expect(&command(&["GET", "nope"]), b"_\r\n").await;
    raw.expect(&command(&["HSET", "h", "f", "v"]), b":1\r\n")
        .await;
    raw.expect(&command(&["HGETALL", "h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
        .await;
    raw.expect(&command(&["HELLO", "2"]), b"*14\r\n").await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn exact_error_strings() {
    let node = node().await;
    let mut raw = Raw::connect(&node).await;
    raw.expect(
        b"FOO a b\r\n",
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
    )
    .await;
    raw.expect(
        &command(&["GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    )
    .await;
    raw.expect(
        &command(&["SET", "k", "v", "EX", "0"]),
        b"-ERR invalid expire time in 'set' command\r\n",
    )
    .await;
    raw.expect(
        &command(&["SET", "k", "v", "EX", "1", "PX", "1"]),
        b"-ERR syntax error\r\n",
    )
    .await;
    raw.expect(
        &command(&["SELECT", "3"]),
        b"-ERR DB index is out of range\r\n",
    )
    .await;
    raw.expect(&command(&["SELECT", "0"]), b"+OK\r\n").await;
    raw.expect(
        &command(&["EXPIRE", "k", "1", "NX", "XX"]),
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    )
    .await;
    raw.expect(&command(&["HSET", "h", "f", "v"]), b":1\r\n")
        .await;
    raw.expect(
        &command(&["INCR", "h"]),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn protocol_error_closes_only_that_connection() {
    let node = node().await;
    let mut good = Raw::connect(&node).await;
    good.expect(&command(&["SET", "k", "v"]), b"+OK\r\n").await;
    for (bad, reply) in [
        (
            &b"*1\r\n+foo\r\n"[..],
            &b"-ERR Protocol error: expected '$', got '+'\r\n"[..],
        ),
        (
            b"*abc\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-3\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$999999999999\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"SET \"unbalanced\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut raw = Raw::connect(&node).await;
        raw.expect(bad, reply).await;
        assert!(
            raw.closed().await,
            "connection must close after {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut raw = Raw::connect(&node).await;
    raw.send(&vec![b'x'; 70 * 1024]).await;
    let reply = raw
        .bytes(b"-ERR Protocol error: too big inline request\r\n".len())
        .await;
    assert_eq!(reply, b"-ERR Protocol error: too big inline request\r\n");
    good.expect(&command(&["GET", "k"]), b"$1\r\nv\r\n").await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_hello_and_names() {
    let dir = std::env::temp_dir().join(format!("store-node-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let node = node_with(|config| config.password_file = Some(file.clone())).await;
    let mut raw = Raw::connect(&node).await;
    raw.expect(
        &command(&["GET", "k"]),
        b"-NOAUTH Authentication required.\r\n",
    )
    .await;
    raw.expect(
        &command(&["AUTH", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    raw.expect(
        &command(&["AUTH", "default", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    raw.expect(&command(&["AUTH", "s3cret"]), b"+OK\r\n").await;
    raw.expect(&command(&["GET", "k"]), b"$-1\r\n").await;

    let mut raw = Raw::connect(&node).await;
    raw.expect(&command(&["AUTH", "default", "s3cret"]), b"+OK\r\n")
        .await;

    let mut raw = Raw::connect(&node).await;
    raw.send(&command(&[
        "HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "app1",
    ]))
    .await;
    assert!(matches!(
        raw.frame().await,
        store_node::protocol::Frame::Map(_)
    ));
    raw.expect(&command(&["CLIENT", "GETNAME"]), b"$4\r\napp1\r\n")
        .await;
    raw.expect(&command(&["GET", "k"]), b"_\r\n").await;

    let url = format!("redis://:s3cret@{}/", node.resp_addr);
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
    let url = format!("redis://:nope@{}/", node.resp_addr);
    assert!(redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .is_err());
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn multi_exec_over_tcp() {
    let node = node().await;
    let mut raw = Raw::connect(&node).await;
    raw.expect(&command(&["MULTI"]), b"+OK\r\n").await;
    raw.expect(&command(&["SET", "a", "1"]), b"+QUEUED\r\n")
        .await;
    raw.expect(&command(&["EXPIRE", "a", "60"]), b"+QUEUED\r\n")
        .await;
    raw.expect(&command(&["EXEC"]), b"*2\r\n+OK\r\n:1\r\n")
        .await;
    raw.expect(&command(&["TTL", "a"]), b":60\r\n").await;
    let mut con = client(&node).await;
    let (set, ttl): (String, i64) = redis::pipe()
        .atomic()
        .set("b", "2")
        .ttl("b")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!((set.as_str(), ttl), ("OK", -1));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn scan_under_churn_returns_every_stable_key() {
    let node = node().await;
    let mut con = client(&node).await;
    let mut pipe = redis::pipe();
    for index in 0..3000 {
        pipe.set(format!("stable:{index}"), "v").ignore();
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
    let churn_node = node.resp_addr;
    let churn = tokio::spawn(async move {
        let mut con = redis::Client::open(format!("redis://{churn_node}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for round in 0..40 {
            let mut pipe = redis::pipe();
            for index in 0..500 {
                pipe.set(format!("churn:{round}:{index}"), "v").ignore();
            }
            if round >= 2 {
                for index in 0..500 {
                    pipe.del(format!("churn:{}:{index}", round - 2)).ignore();
                }
            }
            let _: () = pipe.query_async(&mut con).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let mut seen = HashSet::new();
    let mut cursor: u64 = 0;
    let mut steps = 0;
    loop {
        let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("stable:*")
            .arg("COUNT")
            .arg(20)
            .query_async(&mut con)
            .await
            .unwrap();
        cursor = next.parse().expect("cursor is a decimal integer");
        assert!(
            cursor < (1u64 << 53),
            "cursor {cursor} must fit a JS number"
        );
        seen.extend(keys);
        steps += 1;
        if cursor == 0 {
            break;
        }
    }
    churn.await.unwrap();
    assert!(steps > 10, "a COUNT 20 scan of 3000 keys takes many steps");
    for index in 0..3000 {
        assert!(
            seen.contains(&format!("stable:{index}")),
            "SCAN missed stable:{index}"
        );
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn lazy_and_active_expiry() {
    let node = node_with(|config| config.expiry_sweep_interval_ms = 10).await;
    let mut raw = Raw::connect(&node).await;
    raw.expect(&command(&["SET", "k", "v", "PX", "100"]), b"+OK\r\n")
        .await;
    raw.expect(&command(&["GET", "k"]), b"$1\r\nv\r\n").await;
    let mut con = client(&node).await;
    let mut pipe = redis::pipe();
    for index in 0..2000 {
        pipe.pset_ex(format!("e{index}"), "v", 50).ignore();
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    raw.expect(&command(&["GET", "k"]), b"$-1\r\n").await;
    // Never read: only the active sweep can have removed them.
    raw.expect(&command(&["DBSIZE"]), b":0\r\n").await;
    assert_eq!(node.state.engine.stats().expired, 2001);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_limits() {
    let node = node_with(|config| {
        config.max_clients = 2;
        config.client_idle_timeout = 1;
    })
    .await;
    let mut first = Raw::connect(&node).await;
    first.expect(b"PING\r\n", b"+PONG\r\n").await;
    let mut second = Raw::connect(&node).await;
    second.expect(b"PING\r\n", b"+PONG\r\n").await;
    let mut third = Raw::connect(&node).await;
    let reply = third
        .bytes(b"-ERR max number of clients reached\r\n".len())
        .await;
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    // Idle clients are closed after --client-idle-timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(first.closed().await);
    assert!(second.closed().await);
    let mut fourth = Raw::connect(&node).await;
    fourth.expect(b"PING\r\n", b"+PONG\r\n").await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_and_stops_accepting() {
    let node = node_with(|config| config.shutdown_timeout = 5).await;
    let address = node.resp_addr;
    let state = node.state.clone();
    let mut raw = Raw::connect(&node).await;
    let mut batch = Vec::new();
    for index in 0..1000 {
        batch.extend(command(&["SET", &format!("g{index}"), "v"]));
    }
    raw.send(&batch).await;
    let replies = raw.bytes(5 * 1000).await;
    assert_eq!(replies, b"+OK\r\n".repeat(1000));
    let started = std::time::Instant::now();
    node.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(state.lifecycle().as_str(), "left");
    assert!(raw.closed().await);
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

// Several workers, so the reader's connection really runs in parallel with the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_are_isolated_from_other_clients() {
    let node = node().await;
    let mut writer = Raw::connect(&node).await;
    writer
        .expect(&command(&["SET", "x", "0"]), b"+OK\r\n")
        .await;
    let address = node.resp_addr;
    let reader = tokio::spawn(async move {
        let mut con = redis::Client::open(format!("redis://{address}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut odd = 0;
        for _ in 0..2000 {
            let value: i64 = con.get("x").await.unwrap();
            if value % 2 == 1 {
                odd += 1;
            }
        }
        odd
    });
    // Each transaction increments twice: another client must never see the odd middle state.
    let mut batch = Vec::new();
    let mut expected: Vec<u8> = Vec::new();
    // 200 other commands between the two increments widen the window a reader could hit.
    let padding = 200;
    for round in 0..100 {
        batch.extend(command(&["MULTI"]));
        expected.extend(b"+OK\r\n");
        batch.extend(command(&["INCR", "x"]));
        expected.extend(b"+QUEUED\r\n");
        for index in 0..padding {
            batch.extend(command(&["SET", &format!("pad{index}"), "v"]));
            expected.extend(b"+QUEUED\r\n");
        }
        batch.extend(command(&["INCR", "x"]));
        batch.extend(command(&["EXEC"]));
        expected.extend(b"+QUEUED\r\n");
        expected.extend(format!("*{}\r\n:{}\r\n", padding + 2, 2 * round + 1).as_bytes());
        expected.extend(b"+OK\r\n".repeat(padding));
        expected.extend(format!(":{}\r\n", 2 * round + 2).as_bytes());
    }
    for _ in 0..5 {
        writer.send(&batch).await;
        let replies = writer.bytes(expected.len()).await;
        assert_eq!(replies, expected);
        writer
            .expect(&command(&["SET", "x", "0"]), b"+OK\r\n")
            .await;
    }
    assert_eq!(
        reader.await.unwrap(),
        0,
        "a reader saw a transaction half-applied"
    );
    writer
        .expect(
            &command(&["CLUSTER", "NODES"]),
            b"-ERR This instance has cluster support disabled\r\n",
        )
        .await;
    node.shutdown().await.unwrap();
}

/// Redis's `client-query-buffer-limit` covers the MULTI queue: a client whose queued commands
/// (plus input not parsed yet) pass it is closed without a reply, nothing it queued runs, the
/// stat counts it, and other clients go on.
#[tokio::test]
async fn a_multi_queue_past_the_query_buffer_limit_closes_the_client() {
    let node = node_with(|config| config.client_query_buffer_limit = 64 * 1024).await;
    let mut raw = Raw::connect(&node).await;
    raw.expect(&command(&["MULTI"]), b"+OK\r\n").await;
    let value = "v".repeat(10 * 1024);
    for index in 0..6 {
        raw.expect(
            &command(&["SET", &format!("k{index}"), &value]),
            b"+QUEUED\r\n",
        )
        .await;
    }
    // 7 x 10 KiB queued passes 64 KiB: closed, no QUEUED.
    raw.send(&command(&["SET", "k6", &value])).await;
    assert!(raw.closed().await, "the client stays connected");
    let mut other = Raw::connect(&node).await;
    other.expect(&command(&["EXISTS", "k0"]), b":0\r\n").await;
    other
        .expect(
            &command(&["CONFIG", "GET", "client-query-buffer-limit"]),
            b"*2\r\n$25\r\nclient-query-buffer-limit\r\n$5\r\n65536\r\n",
        )
        .await;
    let mut con = client(&node).await;
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        stats.contains("\r\nclient_query_buffer_limit_disconnections:1\r\n"),
        "{stats}"
    );
    node.shutdown().await.unwrap();
}
