//! The HTTP API (through the router, in-process) sharing its keyspace with RESP clients, and the
//! memory alarm seen from RESP, `/v1/status`, INFO and `/metrics`.

mod common;

use std::collections::HashMap;

use common::{client, command, http, node, node_with, Raw};
use redis::AsyncCommands;
use serde_json::{json, Value};

#[tokio::test]
async fn probes_status_cluster_and_metrics() {
    let node = node().await;
    assert_eq!(
        http(&node, "GET", "/healthz", None, None).await,
        (200, "ok".to_string())
    );
    assert_eq!(
        http(&node, "GET", "/readyz", None, None).await,
        (200, "ready".to_string())
    );
    let mut con = client(&node).await;
    let _: () = con.set("a", "1").await.unwrap();
    let _: Option<String> = con.get("a").await.unwrap();
    let (status, body) = http(&node, "GET", "/v1/status", None, None).await;
    assert_eq!(status, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["nodeName"], "test-0");
    assert!(status["nodeId"].as_str().unwrap().starts_with("test-0-"));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["state"], "ready");
    assert_eq!(status["keys"], 1);
    assert_eq!(status["peers"], json!([]));
    assert_eq!(status["storage"], json!({"mode": "ram"}));
    assert_eq!(status["memory"]["alarm"], false);
    assert_eq!(status["memory"]["evictionPolicy"], "noeviction");
    assert!(status["memory"]["usedBytes"].as_u64().unwrap() > 0);
    assert!(status["uptimeSeconds"].is_u64());
    let (status, body) = http(&node, "GET", "/v1/cluster", None, None).await;
    assert_eq!(status, 200);
    let cluster: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cluster["members"][0]["name"], "test-0");
    let (status, metrics) = http(&node, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("store_node_commands_total{command=\"set\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("store_node_commands_total{command=\"get\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("store_node_keys 1\n"), "{metrics}");
    assert!(
        metrics.contains("store_node_command_duration_seconds_count"),
        "{metrics}"
    );
    assert!(metrics.contains("store_node_memory_alarm 0\n"), "{metrics}");
    assert!(
        metrics.contains("store_node_connected_clients 1\n"),
        "{metrics}"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn sessions_are_shared_between_http_and_redis() {
    let node = node().await;
    let mut con = client(&node).await;
    let body = json!({"data": {"user": "ada", "cart": [1, 2]}, "idleTimeoutSeconds": 60});
    let (status, created) = http(&node, "PUT", "/v1/sessions/abc", Some(body.clone()), None).await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = http(&node, "PUT", "/v1/sessions/abc", Some(body), None).await;
    assert_eq!(status, 200);
    let fields: HashMap<String, String> = con.hgetall("session:abc").await.unwrap();
    assert_eq!(fields["idleTimeout"], "60");
    assert_eq!(
        serde_json::from_str::<Value>(&fields["data"]).unwrap(),
        json!({"user": "ada", "cart": [1, 2]})
    );
    let ttl: i64 = con.ttl("session:abc").await.unwrap();
    assert_eq!(ttl, 60);

    // Written by a Redis client, read over HTTP; the GET slides the TTL to the idle timeout.
    let _: () = con
        .hset_multiple(
            "session:r1",
            &[("data", "{\"x\":1}"), ("idleTimeout", "30")],
        )
        .await
        .unwrap();
    let _: () = con.expire("session:r1", 5).await.unwrap();
    let (status, body) = http(&node, "GET", "/v1/sessions/r1?touch=false", None, None).await;
    assert_eq!(status, 200);
    let session: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(session["data"], json!({"x": 1}));
    assert_eq!(session["idleTimeoutSeconds"], 30);
    let ttl: i64 = con.ttl("session:r1").await.unwrap();
    assert_eq!(ttl, 5, "touch=false must not slide");
    let (status, _) = http(&node, "GET", "/v1/sessions/r1", None, None).await;
    assert_eq!(status, 200);
    let ttl: i64 = con.ttl("session:r1").await.unwrap();
    assert_eq!(ttl, 30, "GET slides the idle timeout");
    let _: () = con.expire("session:r1", 5).await.unwrap();
    let (status, _) = http(&node, "POST", "/v1/sessions/r1/touch", None, None).await;
    assert_eq!(status, 200);
    let ttl: i64 = con.ttl("session:r1").await.unwrap();
    assert_eq!(ttl, 30);

    // Listing pages through every session.
    for index in 0..25 {
        let body = json!({"data": index});
        assert_eq!(
            http(
                &node,
                "PUT",
                &format!("/v1/sessions/list{index}"),
                Some(body),
                None
            )
            .await
            .0,
            201
        );
    }
    let ttl: i64 = con.ttl("session:list0").await.unwrap();
    assert_eq!(ttl, 1800, "default session timeout");
    let mut ids = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let (status, body) = http(
            &node,
            "GET",
            &format!("/v1/sessions?cursor={cursor}&limit=7"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).unwrap();
        for id in page["sessions"].as_array().unwrap() {
            ids.insert(id.as_str().unwrap().to_string());
        }
        cursor = page["nextCursor"].as_str().unwrap().to_string();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(ids.len(), 27);

    assert_eq!(
        http(&node, "DELETE", "/v1/sessions/abc", None, None)
            .await
            .0,
        204
    );
    assert_eq!(
        http(&node, "DELETE", "/v1/sessions/abc", None, None)
            .await
            .0,
        404
    );
    assert_eq!(
        http(&node, "GET", "/v1/sessions/abc", None, None).await.0,
        404
    );
    let exists: bool = con.exists("session:abc").await.unwrap();
    assert!(!exists);
    let too_long = json!({"data": 1, "idleTimeoutSeconds": 86401});
    assert_eq!(
        http(&node, "PUT", "/v1/sessions/x", Some(too_long), None)
            .await
            .0,
        400
    );
    let _: () = con.set("session:str", "plain").await.unwrap();
    assert_eq!(
        http(&node, "GET", "/v1/sessions/str", None, None).await.0,
        409
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn session_api_requires_the_bearer_password() {
    let dir = std::env::temp_dir().join(format!("store-node-http-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "pw").unwrap();
    let token = dir.join("operator-token");
    std::fs::write(&token, "operator-secret\n").unwrap();
    let node = node_with(|config| {
        config.password_file = Some(file.clone());
        config.operator_token_file = Some(token.clone());
    })
    .await;
    let body = json!({"data": 1});
    assert_eq!(
        http(&node, "PUT", "/v1/sessions/a", Some(body.clone()), None)
            .await
            .0,
        401
    );
    assert_eq!(
        http(
            &node,
            "PUT",
            "/v1/sessions/a",
            Some(body.clone()),
            Some("bad")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        http(&node, "PUT", "/v1/sessions/a", Some(body), Some("pw"))
            .await
            .0,
        201
    );
    assert_eq!(
        http(&node, "GET", "/v1/sessions/a", None, None).await.0,
        401
    );
    assert_eq!(http(&node, "GET", "/v1/sessions", None, None).await.0, 401);
    assert_eq!(
        http(&node, "GET", "/v1/sessions/a", None, Some("pw"))
            .await
            .0,
        200
    );
    // Probes and status stay open.
    assert_eq!(http(&node, "GET", "/healthz", None, None).await.0, 200);
    assert_eq!(http(&node, "GET", "/v1/status", None, None).await.0, 200);
    assert_eq!(http(&node, "GET", "/metrics", None, None).await.0, 200);
    assert_eq!(
        http(&node, "POST", "/v1/cluster/leave", None, None).await.0,
        401
    );
    // The client password is not the operator's token.
    assert_eq!(
        http(&node, "POST", "/v1/cluster/leave", None, Some("pw"))
            .await
            .0,
        401
    );
    assert_eq!(
        http(
            &node,
            "POST",
            "/v1/cluster/leave",
            None,
            Some("operator-secret")
        )
        .await
        .0,
        202
    );
    assert_eq!(
        http(&node, "GET", "/readyz", None, None).await,
        (503, "leaving".to_string())
    );
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn leaving_needs_the_operator_token_even_without_client_auth() {
    let dir = std::env::temp_dir().join(format!("store-node-http-leave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let node = node().await;
    // No password, no operator token: nobody may make the node leave.
    let (code, body) = http(&node, "POST", "/v1/cluster/leave", None, None).await;
    assert_eq!(
        (code, body.as_str()),
        (
            403,
            r#"{"error":"leaving needs the operator's token, and this node has none (--operator-token-file)"}"#
        )
    );
    assert_eq!(http(&node, "GET", "/readyz", None, None).await.0, 200);
    node.shutdown().await.unwrap();

    let token = dir.join("operator-token");
    std::fs::write(&token, "tok-1234567890").unwrap();
    let node = node_with(|config| config.operator_token_file = Some(token.clone())).await;
    let (code, body) = http(&node, "POST", "/v1/cluster/leave", None, Some("wrong")).await;
    assert_eq!(
        (code, body.as_str()),
        (401, r#"{"error":"missing or wrong operator token"}"#)
    );
    assert_eq!(
        http(
            &node,
            "POST",
            "/v1/cluster/leave",
            None,
            Some("tok-1234567890")
        )
        .await
        .0,
        202
    );
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn status(node: &store_node::server::RunningNode) -> Value {
    let (code, body) = http(node, "GET", "/v1/status", None, None).await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn memory_alarm_fill_oom_and_recover() {
    let node = node_with(|config| {
        config.max_memory = 300_000;
        config.high_watermark = 0.8;
        config.low_watermark = 0.5;
    })
    .await;
    let mut raw = Raw::connect(&node).await;
    let value = "x".repeat(100);
    let mut written = 0;
    loop {
        raw.send(&command(&["SET", &format!("k{written}"), &value]))
            .await;
        let reply = raw.frame().await;
        match reply {
            store_node::protocol::Frame::Simple(_) => written += 1,
            store_node::protocol::Frame::Error(text) => {
                assert_eq!(
                    text,
                    "OOM command not allowed when used memory > 'maxmemory'."
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(written < 100_000, "OOM never came");
    }
    assert!(written > 100);
    let report = status(&node).await;
    assert_eq!(report["memory"]["alarm"], true);
    assert_eq!(report["memory"]["limitBytes"], 300_000);
    // The watermarks are fractions of the limit minus the reserve (a quarter of so small a
    // limit): 0.8 and 0.5 of 225,000.
    assert_eq!(report["memory"]["reserveBytes"], 75_000);
    assert_eq!(report["memory"]["highWatermarkBytes"], 180_000);
    assert_eq!(report["memory"]["lowWatermarkBytes"], 112_500);
    assert!(report["memory"]["usedBytes"].as_u64().unwrap() >= 180_000);
    raw.send(&command(&["INFO", "memory"])).await;
    let store_node::protocol::Frame::Bulk(info) = raw.frame().await else {
        panic!("INFO is a bulk string in RESP2")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("maxmemory:300000\r\n"), "{info}");
    assert!(info.contains("memory_alarm:1\r\n"), "{info}");
    assert!(info.contains("maxmemory_policy:noeviction\r\n"), "{info}");
    let (_, metrics) = http(&node, "GET", "/metrics", None, None).await;
    assert!(metrics.contains("store_node_memory_alarm 1\n"), "{metrics}");
    assert!(
        metrics.contains("store_node_oom_rejections_total 1\n"),
        "{metrics}"
    );
    // Reads and deletes still work; growth writes are refused until below the low watermark.
    raw.expect(
        &command(&["GET", "k0"]),
        format!("$100\r\n{value}\r\n").as_bytes(),
    )
    .await;
    let mut deleted = 0;
    while status(&node).await["memory"]["usedBytes"].as_u64().unwrap() >= 150_000 {
        raw.expect(&command(&["DEL", &format!("k{deleted}")]), b":1\r\n")
            .await;
        deleted += 1;
    }
    raw.expect(
        &command(&["SET", "again", "v"]),
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    )
    .await;
    while status(&node).await["memory"]["usedBytes"].as_u64().unwrap() >= 112_500 {
        raw.expect(&command(&["DEL", &format!("k{deleted}")]), b":1\r\n")
            .await;
        deleted += 1;
    }
    assert_eq!(status(&node).await["memory"]["alarm"], false);
    raw.expect(&command(&["SET", "again", "v"]), b"+OK\r\n")
        .await;
    raw.send(&command(&["INFO", "memory"])).await;
    let store_node::protocol::Frame::Bulk(info) = raw.frame().await else {
        panic!("bulk")
    };
    assert!(String::from_utf8_lossy(&info).contains("memory_alarm:0\r\n"));
    let (_, metrics) = http(&node, "GET", "/metrics", None, None).await;
    assert!(metrics.contains("store_node_memory_alarm 0\n"), "{metrics}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn volatile_ttl_eviction_makes_room() {
    let node = node_with(|config| {
        config.max_memory = 300_000;
        config.eviction_policy = store_node::config::EvictionPolicy::VolatileTtl;
    })
    .await;
    let mut con = client(&node).await;
    for index in 0..5000 {
        let _: () = con
            .set_ex(format!("s{index}"), "x".repeat(100), 1000 + index)
            .await
            .unwrap();
    }
    let report = status(&node).await;
    assert!(report["memory"]["usedBytes"].as_u64().unwrap() < 300_000);
    let evicted = node.state.engine.stats().evicted;
    assert!(evicted > 3000, "evicted {evicted}");
    // Nearest expiry goes first: the last written (longest TTL) keys survive.
    let last: Option<String> = con.get("s4999").await.unwrap();
    assert!(last.is_some());
    let first: Option<String> = con.get("s0").await.unwrap();
    assert!(first.is_none());
    node.shutdown().await.unwrap();
}

/// One listing request looks at a bounded number of keys, however sparse the sessions are:
/// on a keyspace of 5000 other keys and one session, `limit=1` takes many short pages (some
/// empty with a non-zero cursor), and following `nextCursor` still lists the session once.
#[tokio::test]
async fn a_session_listing_does_bounded_work_per_request() {
    let node = node().await;
    let mut con = client(&node).await;
    for batch in 0..50 {
        let pairs: Vec<(String, u32)> = (0..100)
            .map(|index| (format!("other:{batch}:{index}"), index))
            .collect();
        let _: () = con.mset(&pairs).await.unwrap();
    }
    let body = json!({"data": "only"});
    assert_eq!(
        http(&node, "PUT", "/v1/sessions/only", Some(body), None)
            .await
            .0,
        201
    );
    let (mut cursor, mut pages, mut empty_pages) = ("0".to_string(), 0, 0);
    let mut ids = Vec::new();
    loop {
        let (status, body) = http(
            &node,
            "GET",
            &format!("/v1/sessions?cursor={cursor}&limit=1"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).unwrap();
        let sessions = page["sessions"].as_array().unwrap();
        pages += 1;
        if sessions.is_empty() {
            empty_pages += 1;
        }
        ids.extend(sessions.iter().map(|id| id.as_str().unwrap().to_string()));
        cursor = page["nextCursor"].as_str().unwrap().to_string();
        if cursor == "0" {
            break;
        }
        assert!(pages < 10_000, "the listing does not end");
    }
    assert_eq!(ids, vec!["only".to_string()]);
    // 10 keys looked at per request for limit=1: about 500 requests for 5001 keys.
    assert!(
        pages > 100,
        "{pages} pages: requests walked too much of the keyspace"
    );
    assert!(empty_pages > 0);
}
