//! The HTTP listener's bounds, over real TCP: a client that does not finish its headers, or
//! keeps a connection idle, is disconnected after `--http-header-timeout`; a request whose body
//! does not arrive in `--http-request-timeout` gets 408; beyond `--http-max-concurrent-requests`
//! a request gets 503 and beyond `--http-max-connections` a connection is closed at once.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or 20 s pass); what it sent and how long it
/// took.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received)).await;
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_and_idle_http_clients_are_disconnected() {
    let node = common::node_with(|config| {
        config.http_header_timeout = 1;
        config.http_request_timeout = 1;
    })
    .await;
    // Headers that never end.
    let mut slow = TcpStream::connect(node.http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (received, took) = until_closed(&mut slow).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "closed after {took:?}"
    );
    assert!(!received.contains("200 OK"), "{received}");

    // A keep-alive connection left idle after its request.
    let mut idle = TcpStream::connect(node.http_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (received, took) = until_closed(&mut idle).await;
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
    assert!(
        took < Duration::from_secs(10),
        "idle connection kept {took:?}"
    );

    // A body that never arrives.
    let mut body = TcpStream::connect(node.http_addr).await.unwrap();
    body.write_all(
        b"PUT /v1/sessions/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":",
    )
    .await
    .unwrap();
    let (received, _) = until_closed(&mut body).await;
    assert!(
        received.starts_with("HTTP/1.1 408 Request Timeout"),
        "{received}"
    );
    assert!(
        received.ends_with(r#"{"error":"the request was not received and answered in time"}"#),
        "{received}"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_and_connections_beyond_the_caps_are_refused() {
    let node = common::node_with(|config| {
        config.http_max_concurrent_requests = 1;
        config.http_max_connections = 3;
        config.http_request_timeout = 30;
    })
    .await;
    // One request in progress (its body is still coming) holds the only slot.
    let mut holder = TcpStream::connect(node.http_addr).await.unwrap();
    holder
        .write_all(
            b"PUT /v1/sessions/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"data\"",
        )
        .await
        .unwrap();
    let mut other = TcpStream::connect(node.http_addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        other
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = vec![0u8; 4096];
        let read = other.read(&mut buffer).await.unwrap();
        let answer = String::from_utf8_lossy(&buffer[..read]).into_owned();
        if answer.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break answer;
        }
        // The holder's request may not have reached its handler yet.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{refused}"
    );
    assert!(
        refused.ends_with(r#"{"error":"too many concurrent requests"}"#),
        "{refused}"
    );
    // The held request completes, and the slot is free again.
    holder.write_all(b":1}\r\n\r\n").await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = holder.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 201 Created"));
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let read = other.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200 OK"));

    // Two connections are open; a third is allowed, a fourth closed at once.
    let _third = TcpStream::connect(node.http_addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fourth = TcpStream::connect(node.http_addr).await.unwrap();
        let _ = fourth
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let (received, _) = until_closed(&mut fourth).await;
        if received.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a fourth connection was served: {received}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = common::http(&node, "GET", "/metrics", None, None).await.1;
    assert!(
        metrics.contains("store_node_http_rejected_connections_total 1\n"),
        "{metrics}"
    );
    node.shutdown().await.unwrap();
}
