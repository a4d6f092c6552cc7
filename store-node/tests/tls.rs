//! store-node over TLS with real clients: the `redis` crate (rustls) with and without client
//! certificates, the plain port disabled, a certificate replaced on disk while clients run
//! (new connections get the new one, none fails), HTTPS with the session API's client
//! certificates, and the errors a bad certificate file gives at start.

mod common;
mod tls_support;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use store_node::config::ClientAuth;
use store_node::server::RunningNode;
use tls_support::{client_config, temp_dir, tls_connect, Ca, Issued, NodeFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node with TLS on an OS-chosen port, the given client authentication and reload period.
async fn tls_node(
    files: &NodeFiles,
    auth: ClientAuth,
    adjust: impl FnOnce(&mut store_node::config::Config),
) -> RunningNode {
    common::node_with(|config| {
        config.tls_cert_file = Some(files.cert.clone());
        config.tls_key_file = Some(files.key.clone());
        config.tls_ca_cert_file = Some(files.ca.clone());
        config.tls_auth_clients = auth;
        config.reload_interval_ms = 100;
        adjust(config);
    })
    .await
}

/// A `redis` crate client over TLS (`rediss://localhost`), trusting `ca`, presenting `client`.
async fn redis_tls(
    address: std::net::SocketAddr,
    ca: &Ca,
    client: Option<&Issued>,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let certificates = redis::TlsCertificates {
        client_tls: client.map(|issued| redis::ClientTlsConfig {
            client_cert: issued.cert_pem.as_bytes().to_vec(),
            client_key: issued.key_pem.as_bytes().to_vec(),
        }),
        root_cert: Some(ca.pem.as_bytes().to_vec()),
    };
    let client = redis::Client::build_with_tls(
        format!("rediss://localhost:{}/", address.port()),
        certificates,
    )?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    // A refused client certificate shows at the first command (TLS 1.3).
    let _: String = redis::cmd("PING").query_async(&mut connection).await?;
    Ok(connection)
}

#[tokio::test]
async fn the_redis_crate_speaks_to_the_tls_port_with_and_without_client_certificates() {
    let dir = temp_dir("tls-clients");
    let ca = Ca::new("test CA");
    let files = NodeFiles::write(&dir, &ca, &ca.node(1));
    let client_certificate = ca.client("app");
    let stranger = Ca::new("another CA").client("intruder");

    // tls-auth-clients yes (Redis's default): a certificate the CA signed is required.
    let node = tls_node(&files, ClientAuth::Yes, |_| {}).await;
    let tls = node.tls_addr.expect("TLS listener");
    assert_ne!(tls, node.resp_addr, "the plain port stays open beside it");
    let mut connection = redis_tls(tls, &ca, Some(&client_certificate))
        .await
        .expect("a client with a certificate of the CA connects");
    let _: () = connection.set("k", "over tls").await.unwrap();
    let value: String = connection.get("k").await.unwrap();
    assert_eq!(value, "over tls");
    assert!(redis_tls(tls, &ca, None).await.is_err(), "no certificate");
    assert!(
        redis_tls(tls, &ca, Some(&stranger)).await.is_err(),
        "a certificate of another CA"
    );
    // The plain port serves the same keyspace.
    let mut plain = common::client(&node).await;
    let value: String = plain.get("k").await.unwrap();
    assert_eq!(value, "over tls");
    node.shutdown().await.unwrap();

    // no: any TLS client; optional: a certificate is verified when presented.
    let node = tls_node(&files, ClientAuth::No, |_| {}).await;
    let tls = node.tls_addr.expect("TLS listener");
    redis_tls(tls, &ca, None)
        .await
        .expect("no certificate needed");
    node.shutdown().await.unwrap();
    let node = tls_node(&files, ClientAuth::Optional, |_| {}).await;
    let tls = node.tls_addr.expect("TLS listener");
    redis_tls(tls, &ca, None)
        .await
        .expect("no certificate: accepted");
    redis_tls(tls, &ca, Some(&client_certificate))
        .await
        .expect("a good certificate: accepted");
    assert!(
        redis_tls(tls, &ca, Some(&stranger)).await.is_err(),
        "a bad certificate: refused"
    );
    let metrics = common::http(&node, "GET", "/metrics", None, None).await.1;
    assert!(
        metrics.contains("store_node_tls_handshake_failures_total 1\n"),
        "{metrics}"
    );
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_plain_port_can_be_disabled() {
    let dir = temp_dir("tls-only");
    let ca = Ca::new("test CA");
    let files = NodeFiles::write(&dir, &ca, &ca.node(1));
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let port = probe.local_addr().expect("address").port();
    drop(probe);
    let node = tls_node(&files, ClientAuth::No, |config| {
        config.any_port = false;
        config.resp_port = 0;
        config.tls_port = port;
        config.http_port = 0;
    })
    .await;
    assert_eq!(node.tls_addr, Some(node.resp_addr));
    assert_eq!(node.resp_addr.port(), port);
    // A plain client on the TLS port gets no RESP answer.
    let mut raw = tokio::net::TcpStream::connect(node.resp_addr)
        .await
        .unwrap();
    raw.write_all(b"PING\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut reply)).await;
    assert!(!reply.starts_with(b"+PONG"), "{reply:?}");
    redis_tls(node.resp_addr, &ca, None)
        .await
        .expect("TLS works");
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serial of the certificate a new TLS connection is served.
async fn served_serial(address: std::net::SocketAddr, ca: &Ca) -> String {
    let (_, presented) = tls_connect(address, client_config(ca, None))
        .await
        .expect("TLS handshake");
    store_node::tls::x509::certificate_info(&presented)
        .expect("certificate")
        .serial
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections_without_a_client_error() {
    let dir = temp_dir("tls-reload");
    let ca = Ca::new("test CA");
    let first = ca.node(0x51);
    let files = NodeFiles::write(&dir, &ca, &first);
    let node = tls_node(&files, ClientAuth::No, |_| {}).await;
    let tls = node.tls_addr.expect("TLS listener");
    assert_eq!(served_serial(tls, &ca).await, "51");

    // Clients keep working throughout: one long-lived connection and one that reconnects for
    // every command.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut long_lived = redis_tls(tls, &ca, None).await.expect("connect");
    let workers = {
        let stop = stop.clone();
        let ca_pem = ca.pem.clone();
        tokio::spawn(async move {
            let ca = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca_pem.into_bytes()),
            };
            let mut operations = 0u64;
            let mut index = 0u64;
            while !stop.is_cancelled() {
                index += 1;
                let client = redis::Client::build_with_tls(
                    format!("rediss://localhost:{}/", tls.port()),
                    ca.clone(),
                )
                .expect("client");
                let mut fresh = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("a new connection during the reload");
                let _: () = fresh
                    .set(format!("fresh:{index}"), index)
                    .await
                    .expect("SET on a new connection");
                let _: () = long_lived
                    .set(format!("long:{index}"), index)
                    .await
                    .expect("SET on the connection opened before the reload");
                operations += 2;
            }
            (operations, long_lived)
        })
    };

    let second = ca.node(0x52);
    files.replace(&second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let serial = served_serial(tls, &ca).await;
        if serial == "52" {
            break;
        }
        assert_eq!(serial, "51", "only the old or the new certificate");
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, presented) = tls_connect(tls, client_config(&ca, None)).await.unwrap();
    assert_eq!(presented, second.der, "exactly the new certificate");
    // Let the clients run a little on the new certificate too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let (operations, mut long_lived) = workers.await.expect("no client failed");
    assert!(
        operations > 2,
        "clients ran during the reload: {operations}"
    );
    let pong: String = redis::cmd("PING")
        .query_async(&mut long_lived)
        .await
        .expect("the old connection continues");
    assert_eq!(pong, "PONG");

    // A broken file keeps the current certificate and is counted.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = common::http(&node, "GET", "/metrics", None, None).await.1;
        if metrics.contains("store_node_tls_certificate_reload_failures_total 1\n") {
            assert!(
                metrics.contains("store_node_tls_certificate_reloads_total 1\n"),
                "{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was not noticed: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_serial(tls, &ca).await, "52");
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_certificate_file_is_named_at_start() {
    let dir = temp_dir("tls-bad");
    let ca = Ca::new("test CA");
    let files = NodeFiles::write(&dir, &ca, &ca.node(1));
    let start = |files: &NodeFiles, key: Option<std::path::PathBuf>, auth: ClientAuth, ca: bool| {
        let mut config = store_node::config::Config::for_tests();
        config.tls_cert_file = Some(files.cert.clone());
        config.tls_key_file = key.or(Some(files.key.clone()));
        config.tls_ca_cert_file = ca.then(|| files.ca.clone());
        config.tls_auth_clients = auth;
        store_node::server::start(config)
    };
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, ca.node(2).key_pem).unwrap();
    let error = start(&files, Some(other_key.clone()), ClientAuth::No, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "the key in {} does not fit the certificate in {}",
            other_key.display(),
            files.cert.display()
        )),
        "{error}"
    );
    let error = start(&files, None, ClientAuth::Yes, false)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(error, "--tls-auth-clients yes needs --tls-ca-cert-file");
    std::fs::write(&files.cert, "garbage").unwrap();
    let error = start(&files, None, ClientAuth::No, true)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "{} holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)",
            files.cert.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request over TLS; the status code and body.
async fn https(
    address: std::net::SocketAddr,
    ca: &Ca,
    client: Option<&Issued>,
    request: &str,
) -> (u16, String) {
    let (mut stream, _) = tls_connect(address, client_config(ca, client))
        .await
        .expect("HTTPS handshake");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn https_serves_probes_to_anyone_and_sessions_to_certified_clients() {
    let dir = temp_dir("https");
    let ca = Ca::new("test CA");
    let files = NodeFiles::write(&dir, &ca, &ca.node(1));
    let node = tls_node(&files, ClientAuth::Yes, |config| config.tls_http = true).await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(
        https(node.http_addr, &ca, None, &get("/healthz")).await,
        (200, "ok".to_string())
    );
    assert_eq!(
        https(node.http_addr, &ca, None, &get("/v1/status")).await.0,
        200
    );
    assert_eq!(
        https(node.http_addr, &ca, None, &get("/v1/sessions/a")).await,
        (
            401,
            r#"{"error":"a client certificate signed by the cluster's CA is required"}"#
                .to_string()
        )
    );
    let client = ca.client("app");
    let body = r#"{"data":{"user":1}}"#;
    let put = format!(
        "PUT /v1/sessions/a HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(https(node.http_addr, &ca, Some(&client), &put).await.0, 201);
    assert_eq!(
        https(node.http_addr, &ca, Some(&client), &get("/v1/sessions/a"))
            .await
            .0,
        200
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let mut raw = tokio::net::TcpStream::connect(node.http_addr)
        .await
        .unwrap();
    raw.write_all(get("/healthz").as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut reply)).await;
    assert!(!reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
    node.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
