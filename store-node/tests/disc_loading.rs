//! Disc mode answers while it recovers: the listeners open before recovery, so a
//! client or probe during a long recovery gets an answer instead of "connection refused".
//! Redis clients get `LOADING` for data commands while PING and INFO (`loading:1`) answer,
//! `/readyz` is 503 with the progress, `/v1/status` shows the bytes read of the total, and
//! once ready every key is there.

mod disc_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use disc_support::{Node, TempDir};
use store_node::config::Fsync;
use store_node::persistence::{Persistence, PersistenceConfig};
use store_node::store::{Record, Stamp, Value};

/// Enough 1 KiB sessions that a debug build takes seconds to recover them.
const SESSIONS: usize = 60_000;

fn value(index: usize) -> String {
    format!("{index:08}-{}", "v".repeat(1015))
}

/// Writes the data directory directly through the persistence layer (fast, no server).
fn write_data_dir(dir: &std::path::Path) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    // A fresh directory: it records this node id, which the node then keeps.
    let config = PersistenceConfig::new(dir, Fsync::Everysec, 1);
    let (log, recovered) = Persistence::open(config, now, 0).expect("open a fresh data dir");
    assert!(recovered.records.is_empty());
    for index in 0..SESSIONS {
        let record = Record::live(
            Bytes::from(format!("sess:{index}")),
            Stamp {
                hlc: (now << 16) + index as u64,
                origin: log.node_id(),
            },
            Value::String(Bytes::from(value(index))),
            Some(now + 86_400_000),
        );
        log.append(&record).expect("append");
    }
    log.shutdown().expect("flushed and synced");
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with("wal-") || name.starts_with("snapshot-")
        })
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.len())
        .sum()
}

/// Sends one request and reads one single-line reply (`+...` or `-...`).
fn round_trip(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("reply");
        reply.push(byte[0]);
    }
    String::from_utf8(reply).expect("UTF-8 reply")
}

fn status(node: &Node) -> serde_json::Value {
    let (code, body) = node.http_get("/v1/status").expect("/v1/status answers");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

#[test]
fn a_recovering_node_answers_loading_then_serves_every_key() {
    let tmp = TempDir::new("loading");
    let data = tmp.0.join("data");
    write_data_dir(&data);
    let total = dir_bytes(&data);
    let mut node = Node::new(0, &data);
    let started = Instant::now();
    node.start_disc(&[], "everysec");

    // The first connection that succeeds must find the node still recovering. Raw RESP: the
    // redis crate waits and retries on LOADING by itself (as Redis clients do).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut raw = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", node.resp)) {
            break stream;
        }
        assert!(Instant::now() < deadline, "never accepted a connection");
        std::thread::sleep(Duration::from_millis(5));
    };
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(
        round_trip(&mut raw, "*2\r\n$3\r\nGET\r\n$6\r\nsess:0\r\n"),
        "-LOADING Redis is loading the dataset in memory\r\n"
    );
    assert_eq!(
        round_trip(&mut raw, "*3\r\n$3\r\nSET\r\n$3\r\nnew\r\n$1\r\nx\r\n"),
        "-LOADING Redis is loading the dataset in memory\r\n"
    );
    assert_eq!(round_trip(&mut raw, "*1\r\n$4\r\nPING\r\n"), "+PONG\r\n");
    let mut connection = redis::Client::open(format!("redis://127.0.0.1:{}/", node.resp))
        .expect("valid url")
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connects while loading");
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut connection)
        .expect("INFO answers while loading");
    assert!(info.contains("\r\nloading:1\r\n"), "{info}");
    // The total is known once the directory is listed (phase `pending` before that).
    let expected_total = if info.contains("\r\nloading_phase:pending\r\n") {
        0
    } else {
        total
    };
    assert!(
        info.contains(&format!("\r\nloading_total_bytes:{expected_total}\r\n")),
        "{info}"
    );
    let (code, reason) = node.http_get("/readyz").expect("/readyz answers");
    assert_eq!(code, 503, "{reason}");
    assert!(
        reason.starts_with("loading: recovering from disc: "),
        "{reason}"
    );
    assert_eq!(node.http_get("/healthz").map(|(code, _)| code), Some(200));
    let loading = status(&node);
    assert_eq!(loading["state"], "loading", "{loading}");
    assert_eq!(loading["storage"]["mode"], "disc", "{loading}");
    let recovery = &loading["storage"]["recovery"];
    assert!(
        ["pending", "reading", "loading"].contains(&recovery["phase"].as_str().unwrap_or("")),
        "{loading}"
    );
    if recovery["phase"] != "pending" {
        assert_eq!(recovery["bytesTotal"], total, "{loading}");
        assert!(recovery["bytesRead"].as_u64() <= Some(total), "{loading}");
    }

    eprintln!("first connection after {:?}", started.elapsed());
    node.wait_ready(Duration::from_secs(300));
    eprintln!("ready after {:?}", started.elapsed());
    let ready = status(&node);
    assert_eq!(ready["state"], "ready", "{ready}");
    let recovery = &ready["storage"]["recovery"];
    assert_eq!(recovery["phase"], "done", "{ready}");
    assert_eq!(recovery["bytesRead"], total, "{ready}");
    assert_eq!(recovery["bytesTotal"], total, "{ready}");
    assert_eq!(recovery["recordsLoaded"], SESSIONS as u64, "{ready}");
    assert_eq!(recovery["recordsTotal"], SESSIONS as u64, "{ready}");
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut connection)
        .expect("INFO");
    assert!(info.contains("\r\nloading:0\r\n"), "{info}");

    let size: usize = redis::cmd("DBSIZE").query(&mut connection).expect("DBSIZE");
    assert_eq!(size, SESSIONS);
    for start in (0..SESSIONS).step_by(1000) {
        let keys: Vec<String> = (start..start + 1000).map(|i| format!("sess:{i}")).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut connection)
            .expect("MGET");
        for (offset, got) in values.into_iter().enumerate() {
            assert_eq!(got, Some(value(start + offset)), "sess:{}", start + offset);
        }
    }
    assert_eq!(
        round_trip(&mut raw, "*3\r\n$3\r\nSET\r\n$3\r\nnew\r\n$1\r\nx\r\n"),
        "+OK\r\n",
        "writes are served once ready"
    );
    assert!(node.terminate(Duration::from_secs(10)));
}
