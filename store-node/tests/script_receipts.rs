//! A script's writes are waited for like any write before its reply goes out: in disc mode
//! with `--fsync always` the EVAL is answered only once the log holds them (a stalled writer
//! holds the reply back; a failing one turns it into `MISCONF`), and with `--write-ack all`
//! a peer that cannot acknowledge turns it into `NOREPLICAS` (multi-process, the peer cut off
//! with `--test-faults`). Scripts that only read answer at once either way.

mod cluster_support;
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster_support::{eventually, nodes, start_all, Node};
use common::node_with;
use common::versus_redis::Conn;
use store_node::config::{Fsync, StorageMode};
use store_node::persistence::WriterFault;
use store_node::scripting::sha1_hex;

const WRITE: &str = "return redis.call('set', KEYS[1], ARGV[1])";
const READ: &str = "return redis.call('get', KEYS[1])";

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    TempDir(std::env::temp_dir().join(format!(
        "store-node-script-receipts-{}-{nanos}",
        std::process::id()
    )))
}

/// Whether a reply arrives on `conn` within `within` (it is left unread).
fn reply_within(conn: &mut Conn, within: Duration) -> bool {
    conn.stream.set_read_timeout(Some(within)).expect("timeout");
    let mut byte = [0u8; 1];
    let arrived = matches!(conn.stream.peek(&mut byte), Ok(read) if read > 0);
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    arrived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_is_answered_once_its_writes_are_durable_or_with_misconf() {
    let dir = temp_dir();
    let data_dir = dir.0.clone();
    let node = node_with(move |config| {
        config.storage_mode = StorageMode::Disc;
        config.data_dir = data_dir;
        config.fsync = Fsync::Always;
    })
    .await;
    let persistence = node
        .state
        .persistence()
        .expect("disc mode has a log")
        .clone();
    let address = node.resp_addr;
    tokio::task::spawn_blocking(move || {
        let mut conn = Conn::open(address);
        assert_eq!(conn.call(&["EVAL", WRITE, "1", "k", "v0"]), "+OK\r\n");

        // A stalled disc: the script has run, its reply waits for the log.
        let durable_before = persistence.durable_seq();
        persistence.inject_fault(WriterFault::Stall);
        conn.send(&["EVAL", WRITE, "1", "k", "v1"]);
        assert!(
            !reply_within(&mut conn, Duration::from_millis(500)),
            "answered before the log held the write"
        );
        // Reads are not held back.
        let mut reader = Conn::open(address);
        assert_eq!(reader.call(&["EVAL", READ, "1", "k"]), "$2\r\nv1\r\n");
        persistence.inject_fault(WriterFault::None);
        assert_eq!(conn.reply(), "+OK\r\n");
        assert!(
            persistence.durable_seq() > durable_before,
            "answered before the write was durable"
        );

        // A failing disc: the write in flight is answered MISCONF, later ones are refused
        // inside the script before they run.
        persistence.inject_fault(WriterFault::Fail);
        let in_flight = conn.call(&["EVAL", WRITE, "1", "k", "v2"]);
        assert!(
            in_flight.starts_with("-MISCONF Errors writing to the write-ahead log: write ")
                && in_flight.ends_with("No space left on device (os error 28)\r\n"),
            "{in_flight:?}"
        );
        let refused = conn.call(&["EVAL", WRITE, "1", "other", "v3"]);
        let suffix = format!(
            " script: {}, on @user_script:1.\r\n",
            sha1_hex(WRITE.as_bytes())
        );
        assert!(
            refused.starts_with("-MISCONF Errors writing to the write-ahead log: ")
                && refused.ends_with(&suffix),
            "{refused:?}"
        );
        assert_eq!(conn.call(&["EVAL", READ, "1", "other"]), "$-1\r\n");
        persistence.inject_fault(WriterFault::None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while persistence.check_writable().is_err() {
            assert!(Instant::now() < deadline, "the log never recovered");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(conn.call(&["EVAL", WRITE, "1", "other", "v4"]), "+OK\r\n");
    })
    .await
    .expect("conversation");
    node.shutdown().await.expect("clean shutdown");
}

fn block(node: &Node, peers: &[String]) {
    let body = serde_json::json!({ "blocked": peers }).to_string();
    let (status, _) = node
        .http_post("/v1/test/faults", &body)
        .expect("faults endpoint");
    assert_eq!(status, 200);
}

fn peers_connected(node: &Node) -> Option<bool> {
    let (_, body) = node.http_get("/v1/status")?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    let peers = status["peers"].as_array()?;
    Some(!peers.is_empty() && peers.iter().all(|peer| peer["connected"] == true))
}

fn eval(
    node: &Node,
    script: &str,
    key: &str,
    value: Option<&str>,
) -> redis::RedisResult<redis::Value> {
    let mut command = redis::cmd("EVAL");
    command.arg(script).arg(1).arg(key);
    if let Some(value) = value {
        command.arg(value);
    }
    command.query(&mut node.redis())
}

#[test]
fn a_script_whose_writes_a_peer_cannot_acknowledge_answers_noreplicas() {
    let (mut all, peers) = nodes(2);
    start_all(
        &mut all,
        &peers,
        &[
            "--write-ack",
            "all",
            "--write-ack-timeout-ms",
            "300",
            "--test-faults",
        ],
    );
    assert!(eventually(Duration::from_secs(30), || all
        .iter()
        .all(|node| peers_connected(node) == Some(true))));
    assert_eq!(
        eval(&all[0], WRITE, "k", Some("both")),
        Ok(redis::Value::Okay)
    );

    block(&all[0], &peers[1..]);
    block(&all[1], &peers[..1]);
    assert!(eventually(Duration::from_secs(30), || peers_connected(
        &all[0]
    ) == Some(false)));
    let started = Instant::now();
    let error = eval(&all[0], WRITE, "k", Some("alone")).expect_err("NOREPLICAS");
    assert_eq!(error.code(), Some("NOREPLICAS"), "{error:?}");
    assert_eq!(
        error.detail(),
        Some("Not enough good replicas to write: 0 of 1 peer(s) acknowledged within 300 ms")
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The write stays applied (and replicates once the peer is back), as for any write.
    assert_eq!(
        eval(&all[0], READ, "k", None),
        Ok(redis::Value::BulkString(b"alone".to_vec()))
    );

    block(&all[0], &[]);
    block(&all[1], &[]);
    assert!(eventually(Duration::from_secs(30), || {
        let mut connection = all[1].redis();
        redis::cmd("GET")
            .arg("k")
            .query::<Option<String>>(&mut connection)
            .ok()
            .flatten()
            .as_deref()
            == Some("alone")
    }));
}
