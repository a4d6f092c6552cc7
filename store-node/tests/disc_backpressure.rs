//! Disc mode on a slow disc. Promise: while the write-ahead log's queue is full, only the
//! clients that write wait, and they wait without blocking a thread: every other connection
//! served by the same connection thread keeps being answered at once, and so does the HTTP API
//! (a session read, `/v1/status`). Once the disc catches up, every waiting write is answered
//! and applied.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{command, http, node_with, Raw};
use store_node::config::{Fsync, StorageMode};
use store_node::persistence::WriterFault;

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
        "store-node-backpressure-{}-{nanos}",
        std::process::id()
    )))
}

/// How many whole `+OK\r\n` replies `raw` received so far, without waiting.
fn replies_so_far(raw: &mut Raw, received: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    while let Ok(read) = raw.stream.try_read(&mut chunk) {
        if read == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..read]);
    }
    received.len() / b"+OK\r\n".len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_queue_stalls_no_unrelated_connection() {
    let dir = temp_dir();
    let data_dir = dir.0.clone();
    let limit = 64 * 1024;
    let node = node_with(move |config| {
        config.storage_mode = StorageMode::Disc;
        config.data_dir = data_dir;
        config.fsync = Fsync::Everysec;
        // One connection thread: a blocked thread would stall the reader below too.
        config.io_threads = 1;
        config.log_queue_limit_bytes = limit;
    })
    .await;
    let persistence = node
        .state
        .persistence()
        .expect("disc mode has a log")
        .clone();
    let mut reader = Raw::connect(&node).await;
    reader
        .expect(&command(&["SET", "k", "before"]), b"+OK\r\n")
        .await;

    persistence.inject_fault(WriterFault::Stall);
    let mut writer = Raw::connect(&node).await;
    let value = "v".repeat(16 * 1024);
    let writes = 20;
    let mut batch = Vec::new();
    for index in 0..writes {
        batch.extend(command(&["SET", &format!("w{index}"), &value]));
    }
    writer.send(&batch).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (persistence.metrics().snapshot().queued_bytes as usize) < limit {
        assert!(Instant::now() < deadline, "the log's queue never filled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let put = tokio::spawn({
        let state = node.state.clone();
        async move {
            let body = serde_json::json!({ "data": { "cart": 1 } });
            let request = axum::http::Request::builder()
                .method("PUT")
                .uri("/v1/sessions/waiting")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .expect("request");
            use tower::ServiceExt;
            store_node::net::http::router(state)
                .oneshot(request)
                .await
                .map(|response| response.status().as_u16())
        }
    });

    // The other connection, on the same (only) connection thread, is answered at once.
    let started = Instant::now();
    reader
        .expect(&command(&["GET", "k"]), b"$6\r\nbefore\r\n")
        .await;
    reader.expect(&command(&["PING"]), b"+PONG\r\n").await;
    reader
        .expect(&command(&["EXISTS", "w0", "k"]), b":2\r\n")
        .await;
    let (status, _) = http(&node, "GET", "/v1/status", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = http(&node, "GET", "/v1/sessions/none", None, None).await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"session not found"}"#)
    );
    let answered_in = started.elapsed();
    assert!(
        answered_in < Duration::from_secs(2),
        "reads took {answered_in:?} while the log was full"
    );

    // The writers are still waiting for the disc.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut received = Vec::new();
    let answered = replies_so_far(&mut writer, &mut received);
    assert!(
        answered < writes,
        "{answered} of {writes} writes answered while the disc stalls"
    );
    assert!(
        !put.is_finished(),
        "a session PUT answered while the log was full"
    );

    persistence.inject_fault(WriterFault::None);
    let rest = writer.bytes(writes * 5 - received.len()).await;
    received.extend(rest);
    assert_eq!(received, b"+OK\r\n".repeat(writes));
    let put_status = tokio::time::timeout(Duration::from_secs(10), put)
        .await
        .expect("the session PUT is answered once the disc caught up")
        .expect("task")
        .expect("response");
    assert_eq!(put_status, 201);
    reader
        .expect(
            &command(&["STRLEN", &format!("w{}", writes - 1)]),
            format!(":{}\r\n", value.len()).as_bytes(),
        )
        .await;
    eprintln!(
        "figures: {writes} pipelined writes of 16 KiB waited for a stalled disc (log queue {limit} bytes); reads on the same connection thread answered in {answered_in:?}; {answered} writes answered before the disc recovered, all {writes} after"
    );
    node.shutdown().await.expect("shutdown");
}
