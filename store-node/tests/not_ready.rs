//! A node that is not ready (not synced with its peers yet) serves no data: RESP data commands
//! answer `LOADING` and the session API 503, while probes, `PING`, `INFO` and `CONFIG`
//! answer; `replica-serve-stale-data yes` lets reads through, never writes. Here the node's
//! only peer never answers and its first-start wait is long, so it stays `loading`.

mod common;

use common::{command, http, node_with, Raw};

const LOADING: &[u8] = b"-LOADING Redis is loading the dataset in memory\r\n";
const LOADING_JSON: &str = r#"{"error":"LOADING Redis is loading the dataset in memory"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_ready_serves_no_data_unless_stale_reads_are_allowed() {
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = unreachable.local_addr().expect("address").to_string();
    // Bound and never accepted: dials hang until their timeout, the peer is never reached.
    let node = node_with(move |config| {
        config.peers = vec![peer];
        config.peer_port = 0;
        config.first_start_wait_ms = 600_000;
    })
    .await;
    let (status, body) = http(&node, "GET", "/readyz", None, None).await;
    assert_eq!(status, 503, "{body}");
    let mut raw = Raw::connect(&node).await;
    raw.expect(&command(&["GET", "k"]), LOADING).await;
    raw.expect(&command(&["SET", "k", "v"]), LOADING).await;
    raw.expect(&command(&["DBSIZE"]), LOADING).await;
    raw.expect(&command(&["PING"]), b"+PONG\r\n").await;
    raw.send(&command(&["INFO", "persistence"])).await;
    let info = format!("{:?}", raw.frame().await);
    assert!(info.contains("loading:1"), "{info}");
    raw.expect(
        &command(&["CONFIG", "GET", "replica-serve-stale-data"]),
        b"*2\r\n$24\r\nreplica-serve-stale-data\r\n$2\r\nno\r\n",
    )
    .await;
    assert_eq!(
        http(&node, "GET", "/v1/sessions/s", None, None).await,
        (503, LOADING_JSON.to_string())
    );
    let body = serde_json::json!({ "data": 1 });
    assert_eq!(
        http(&node, "PUT", "/v1/sessions/s", Some(body.clone()), None).await,
        (503, LOADING_JSON.to_string())
    );
    assert_eq!(http(&node, "GET", "/v1/status", None, None).await.0, 200);

    raw.expect(
        &command(&["CONFIG", "SET", "replica-serve-stale-data", "maybe"]),
        b"-ERR CONFIG SET failed (possibly related to argument 'replica-serve-stale-data') - argument must be 'yes' or 'no'\r\n",
    )
    .await;
    raw.expect(
        &command(&["CONFIG", "SET", "replica-serve-stale-data", "yes"]),
        b"+OK\r\n",
    )
    .await;
    raw.expect(&command(&["GET", "k"]), b"$-1\r\n").await;
    raw.expect(&command(&["DBSIZE"]), b":0\r\n").await;
    raw.expect(&command(&["SET", "k", "v"]), LOADING).await;
    assert_eq!(
        http(&node, "GET", "/v1/sessions/s", None, None).await,
        (404, r#"{"error":"session not found"}"#.to_string())
    );
    assert_eq!(
        http(&node, "PUT", "/v1/sessions/s", Some(body), None).await,
        (503, LOADING_JSON.to_string())
    );
    raw.expect(
        &command(&["CONFIG", "SET", "replica-serve-stale-data", "no"]),
        b"+OK\r\n",
    )
    .await;
    raw.expect(&command(&["GET", "k"]), LOADING).await;
    drop(unreachable);
    node.shutdown().await.expect("shutdown");
}
