//! Sessions as a client sees them: RESP connections with the cluster password, HTTP session
//! API calls, a continuous traffic generator that remembers every acknowledged write, and the
//! check that every acknowledged session is readable from every pod.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use kube::Client;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo as _};
use tokio::task::JoinHandle;

use crate::forward::Forwarder;
use crate::http;

/// Bound on one Redis command (connect and response).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a RESP connection to `addr` authenticated with `password`.
pub async fn connect(addr: SocketAddr, password: &str) -> anyhow::Result<MultiplexedConnection> {
    let info = format!("redis://{addr}/").into_connection_info()?;
    let settings = info
        .redis_settings()
        .clone()
        .set_password(password)
        .set_skip_set_lib_name();
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("RESP connect + AUTH to {addr}"))
}

/// The full error line a Redis client shows for a server error: `CODE detail`.
pub fn error_line(error: &redis::RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => error.to_string(),
    }
}

/// `PUT /v1/sessions/{id}` with `data`; returns the response.
pub async fn http_put(
    addr: SocketAddr,
    token: &str,
    id: &str,
    data: &serde_json::Value,
) -> anyhow::Result<http::Response> {
    http::request(
        addr,
        "PUT",
        &format!("/v1/sessions/{id}"),
        Some(token),
        Some(&serde_json::json!({ "data": data, "idleTimeoutSeconds": 3600 })),
    )
    .await
}

/// `GET /v1/sessions/{id}?touch=false` over a kept-alive `connection`: the session's data, or
/// `None` on 404.
pub async fn http_get(
    connection: &mut http::Connection,
    token: &str,
    id: &str,
) -> anyhow::Result<Option<serde_json::Value>> {
    let response = connection
        .request(
            "GET",
            &format!("/v1/sessions/{id}?touch=false"),
            Some(token),
            None,
        )
        .await?;
    match response.status {
        200 => Ok(Some(response.json()?["data"].clone())),
        404 => Ok(None),
        status => bail!("GET session {id}: status {status}: {}", response.body),
    }
}

/// `GET /v1/status` of a node.
pub async fn node_status(addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let response = http::request(addr, "GET", "/v1/status", None, None).await?;
    if response.status != 200 {
        bail!("/v1/status answered {}: {}", response.status, response.body);
    }
    response.json()
}

/// What a traffic generator did.
#[derive(Debug, Default, Clone)]
pub struct TrafficReport {
    /// Every `(key, value)` whose `SET` was acknowledged with OK.
    pub acknowledged: Vec<(String, String)>,
    /// Writes attempted.
    pub attempts: u64,
    /// Failed writes and failed connection attempts.
    pub errors: u64,
    /// Reads of an earlier acknowledged key (same connection) that returned nothing or another
    /// value: a node serving a write it then forgot.
    pub stale_reads: u64,
    /// Distinct error messages with their counts, in order of first appearance.
    pub error_kinds: Vec<(String, u64)>,
}

impl TrafficReport {
    fn error(&mut self, message: String) {
        self.errors += 1;
        // Port numbers and addresses vary; keep the first 120 characters as the kind.
        let kind: String = message.chars().take(120).collect();
        match self.error_kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += 1,
            None => self.error_kinds.push((kind, 1)),
        }
    }

    fn absorb(&mut self, other: TrafficReport) {
        self.acknowledged.extend(other.acknowledged);
        self.attempts += other.attempts;
        self.stale_reads += other.stale_reads;
        for (kind, count) in other.error_kinds {
            self.errors += count;
            match self.error_kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, c)) => *c += count,
                None => self.error_kinds.push((kind, count)),
            }
        }
    }

    /// `attempts, acknowledged, errors (kinds), stale reads` on one line.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .error_kinds
            .iter()
            .map(|(kind, count)| format!("{count}x {kind:?}"))
            .collect();
        format!(
            "{} writes attempted, {} acknowledged, {} errors [{}], {} stale reads",
            self.attempts,
            self.acknowledged.len(),
            self.errors,
            kinds.join(", "),
            self.stale_reads
        )
    }
}

/// Continuous client traffic: `writers` tasks, each with its own connection to `addr` (a
/// Service forwarder, so reconnects land on any ready pod), each writing `SET key value EX
/// 3600` every `pause` and reading back the key it wrote ten writes earlier. On an error the
/// writer drops its connection and reconnects.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<TrafficReport>>,
}

impl Traffic {
    /// Starts the writers; keys are `<prefix>:<writer>:<sequence>`.
    pub fn start(
        addr: SocketAddr,
        password: &str,
        prefix: &str,
        writers: usize,
        pause: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..writers)
            .map(|writer| {
                let stop = stop.clone();
                let password = password.to_owned();
                let prefix = format!("{prefix}:{writer}");
                tokio::spawn(write_loop(addr, password, prefix, pause, stop))
            })
            .collect();
        Self { stop, writers }
    }

    /// Stops the writers and returns what they did.
    pub async fn stop(self) -> anyhow::Result<TrafficReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = TrafficReport::default();
        for writer in self.writers {
            report.absorb(writer.await.context("traffic writer panicked")?);
        }
        Ok(report)
    }
}

async fn write_loop(
    addr: SocketAddr,
    password: String,
    prefix: String,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> TrafficReport {
    let mut report = TrafficReport::default();
    let mut connection: Option<MultiplexedConnection> = None;
    let mut sequence: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match connect(addr, &password).await {
                Ok(conn) => connection.insert(conn),
                Err(error) => {
                    report.error(format!("connect: {error:#}"));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
        };
        let key = format!("{prefix}:{sequence}");
        let value = format!("v{sequence}-{}", "x".repeat(64));
        report.attempts += 1;
        let written: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("EX")
            .arg(3600)
            .query_async(conn)
            .await;
        match written {
            Ok(()) => {
                report.acknowledged.push((key, value));
                let len = report.acknowledged.len();
                if len > 10 {
                    let (old_key, old_value) = report.acknowledged[len - 11].clone();
                    let read: redis::RedisResult<Option<String>> =
                        redis::cmd("GET").arg(&old_key).query_async(conn).await;
                    match read {
                        Ok(Some(v)) if v == old_value => {}
                        Ok(_) => report.stale_reads += 1,
                        Err(error) => {
                            report.error(format!("GET: {}", error_line(&error)));
                            connection = None;
                        }
                    }
                }
            }
            Err(error) => {
                report.error(format!("SET: {}", error_line(&error)));
                connection = None;
            }
        }
        sequence += 1;
        tokio::time::sleep(pause).await;
    }
    report
}

/// Checks that every `(key, value)` is readable with GET from every pod in `pods`, retrying for
/// up to `timeout` (replication is asynchronous). Returns the number of keys checked per pod.
pub async fn verify_on_pods(
    client: &Client,
    namespace: &str,
    pods: &[String],
    password: &str,
    expected: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<usize> {
    for pod in pods {
        let forwarder = Forwarder::pod(client, namespace, pod, 6379).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing = match missing_keys(forwarder.addr(), password, expected).await {
                Ok(missing) => missing,
                Err(error) => vec![format!("(read failed: {error:#})")],
            };
            if missing.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let shown: Vec<&String> = missing.iter().take(10).collect();
                bail!(
                    "pod {pod}: {} of {} acknowledged keys missing or wrong after {:.0}s, e.g. {shown:?}",
                    missing.len(),
                    expected.len(),
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(expected.len())
}

/// Keys of `expected` that `addr` does not return with the expected value (MGET in chunks).
pub async fn missing_keys(
    addr: SocketAddr,
    password: &str,
    expected: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    let mut conn = connect(addr, password).await?;
    let mut missing = Vec::new();
    for chunk in expected.chunks(500) {
        let keys: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("MGET: {}", error_line(&e)))?;
        for ((key, value), got) in chunk.iter().zip(values) {
            if got.as_deref() != Some(value.as_str()) {
                missing.push(key.clone());
            }
        }
    }
    Ok(missing)
}

/// Writes `count` keys `<prefix>:<i>` with `SET ... EX 3600` through `addr`, over
/// `connections` connections (a Service forwarder spreads them over the ready pods). Every
/// write must succeed; returns the `(key, value)` pairs.
pub async fn write_keys(
    addr: SocketAddr,
    password: &str,
    prefix: &str,
    count: usize,
    connections: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut written = Vec::with_capacity(count);
    let per_connection = count.div_ceil(connections.max(1));
    for chunk_start in (0..count).step_by(per_connection.max(1)) {
        let mut conn = connect(addr, password).await?;
        for i in chunk_start..(chunk_start + per_connection).min(count) {
            let key = format!("{prefix}:{i}");
            let value = format!("value-{i}-{}", "s".repeat(32));
            let () = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("EX")
                .arg(3600)
                .query_async(&mut conn)
                .await
                .map_err(|e| anyhow::anyhow!("SET {key}: {}", error_line(&e)))?;
            written.push((key, value));
        }
    }
    Ok(written)
}

/// Creates `count` HTTP sessions `<prefix>-<i>` through `addr` (one connection each, so a
/// Service forwarder spreads them); every PUT must answer 201. Returns `(id, data)` pairs.
pub async fn write_http_sessions(
    addr: SocketAddr,
    token: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut written = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        let data = serde_json::json!({"user": format!("user-{i}"), "cart": [i, i + 1], "admin": i % 7 == 0});
        let response = http_put(addr, token, &id, &data).await?;
        if response.status != 201 {
            bail!(
                "PUT session {id}: expected 201, got {}: {}",
                response.status,
                response.body
            );
        }
        written.push((id, data));
    }
    Ok(written)
}

/// Checks that every HTTP session in `expected` is returned by `GET /v1/sessions/{id}` of every
/// pod, retrying for up to `timeout`. Returns sessions checked per pod.
pub async fn verify_http_on_pods(
    client: &Client,
    namespace: &str,
    pods: &[String],
    token: &str,
    expected: &[(String, serde_json::Value)],
    timeout: Duration,
) -> anyhow::Result<usize> {
    for pod in pods {
        let forwarder = Forwarder::pod(client, namespace, pod, 8080).await?;
        // One port-forward stream for all reads of this pod: a new one per GET costs about a
        // second each.
        let mut connection = http::Connection::new(forwarder.addr());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut missing = Vec::new();
            for (id, data) in expected {
                match http_get(&mut connection, token, id).await {
                    Ok(Some(got)) if &got == data => {}
                    Ok(Some(got)) => missing.push(format!("{id} (got {got})")),
                    Ok(None) => missing.push(format!("{id} (404)")),
                    Err(error) => missing.push(format!("{id} ({error:#})")),
                }
            }
            if missing.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let shown: Vec<&String> = missing.iter().take(5).collect();
                bail!(
                    "pod {pod}: {} of {} HTTP sessions missing or wrong after {:.0}s, e.g. {shown:?}",
                    missing.len(),
                    expected.len(),
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(expected.len())
}
