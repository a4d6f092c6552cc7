//! The HTTP API: the session API over the shared keyspace, probes, `/v1/status` (the
//! operator's contract), `/v1/cluster` and `/metrics`.
//!
//! Session mapping: HTTP session `{id}` is the Redis hash `session:{id}` with the fields `data`
//! (the session's JSON, as text) and `idleTimeout` (seconds); its TTL is the idle timeout and a
//! GET slides it. Redis clients see and may write the same hashes.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::state::{Lifecycle, NodeState};
use crate::store::{glob, Kind, Op};

/// Prefix of the Redis key that holds an HTTP session.
pub const SESSION_PREFIX: &str = "session:";
/// Hash field holding the session data (JSON text).
pub const DATA_FIELD: &str = "data";
/// Hash field holding the idle timeout in seconds.
pub const IDLE_FIELD: &str = "idleTimeout";
/// Longest session id accepted.
pub const MAX_ID_LEN: usize = 256;

/// `/v1/status` body (docs/contract.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `--node-name`.
    pub node_name: String,
    /// Per-process id.
    pub node_id: String,
    /// Crate version.
    pub version: String,
    /// `loading`, `ready`, `leaving` or `left`.
    pub state: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Keys in the keyspace.
    pub keys: u64,
    /// Memory accounting.
    pub memory: MemoryReport,
    /// Replication peers (none on a single node).
    pub peers: Vec<PeerReport>,
    /// Storage mode.
    pub storage: StorageReport,
}

/// Memory part of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    /// Estimated bytes used.
    pub used_bytes: u64,
    /// Limit (0 = unlimited).
    pub limit_bytes: u64,
    /// Alarm threshold.
    pub high_watermark_bytes: u64,
    /// Alarm clear threshold.
    pub low_watermark_bytes: u64,
    /// Whether the alarm is raised.
    pub alarm: bool,
    /// Eviction policy name.
    pub eviction_policy: String,
}

/// A peer in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    /// The peer's node name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Whether connected.
    pub connected: bool,
    /// Ops not yet acknowledged.
    pub lag_ops: u64,
}

/// Storage part of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageReport {
    /// `ram` or `disc`.
    pub mode: String,
    /// Disc mode only: the data directory and its usage.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub disc: Option<DiscReport>,
}

/// Disc-mode part of [`StorageReport`] (absent in RAM mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscReport {
    /// `--data-dir`.
    pub data_dir: String,
    /// `always` or `everysec`.
    pub fsync: String,
    /// Bytes of snapshots and log segments.
    pub disc_bytes: u64,
    /// 99th percentile fdatasync latency (µs), absent before the first fdatasync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync_p99_micros: Option<u64>,
    /// When the last snapshot was written (Unix ms), 0 = none since start.
    pub last_snapshot_unix_ms: u64,
    /// Whether the log is failing (writes answer `MISCONF`).
    pub failing: bool,
    /// Recovery from the data directory at start: in progress while `state` is `loading`,
    /// then its final counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,
}

/// Recovery part of [`DiscReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStatus {
    /// `pending`, `reading` (snapshot and log), `loading` (into memory) or `done`.
    pub phase: String,
    /// Bytes of snapshot and log read.
    pub bytes_read: u64,
    /// Bytes of snapshot and log to read.
    pub bytes_total: u64,
    /// Records loaded into memory.
    pub records_loaded: u64,
    /// Records to load into memory (known once reading is done).
    pub records_total: u64,
}

fn recovery_status(state: &NodeState) -> RecoveryStatus {
    let progress = state.recovery.snapshot();
    RecoveryStatus {
        phase: progress.phase.as_str().to_string(),
        bytes_read: progress.bytes_read,
        bytes_total: progress.bytes_total,
        records_loaded: progress.records_loaded,
        records_total: progress.records_total,
    }
}

/// The storage report of a node.
pub fn storage_report(state: &NodeState) -> StorageReport {
    if state.config.storage_mode != crate::config::StorageMode::Disc {
        return StorageReport {
            mode: "ram".to_string(),
            disc: None,
        };
    }
    // While recovering, the log is not open yet: only the recovery progress is known.
    let metrics = state
        .engine
        .persistence()
        .map(|persistence| persistence.metrics().snapshot())
        .unwrap_or_default();
    StorageReport {
        mode: "disc".to_string(),
        disc: Some(DiscReport {
            data_dir: state.config.data_dir.display().to_string(),
            fsync: match state.config.fsync {
                crate::config::Fsync::Always => "always",
                crate::config::Fsync::Everysec => "everysec",
            }
            .to_string(),
            disc_bytes: metrics.disc_bytes,
            fsync_p99_micros: metrics.fsync_quantile_micros(0.99),
            last_snapshot_unix_ms: metrics.last_snapshot_unix_ms,
            failing: metrics.failing,
            recovery: Some(recovery_status(state)),
        }),
    }
}

/// Builds the status document.
pub fn node_status(state: &NodeState) -> NodeStatus {
    let memory = state.engine.memory();
    NodeStatus {
        node_name: state.node_name.clone(),
        node_id: state.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        state: state.lifecycle().as_str().to_string(),
        uptime_seconds: state.uptime_seconds(),
        keys: state.engine.len(),
        memory: MemoryReport {
            used_bytes: memory.used_bytes,
            limit_bytes: memory.limit_bytes,
            high_watermark_bytes: memory.high_watermark_bytes,
            low_watermark_bytes: memory.low_watermark_bytes,
            alarm: memory.alarm,
            eviction_policy: memory.policy.as_str().to_string(),
        },
        peers: state
            .replication()
            .map(|replication| {
                replication
                    .peers()
                    .into_iter()
                    .map(|peer| PeerReport {
                        name: peer.name,
                        address: peer.address,
                        connected: peer.connected,
                        lag_ops: peer.lag_ops,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        storage: storage_report(state),
    }
}

/// The router over a node's state.
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/leave", post(leave))
        .route("/metrics", get(metrics))
        .route("/v1/test/faults", post(test_faults))
        .route("/v1/sessions", get(list_sessions))
        .route(
            "/v1/sessions/{id}",
            get(get_session).put(put_session).delete(delete_session),
        )
        .route("/v1/sessions/{id}/touch", post(touch_session))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<NodeState>>) -> Response {
    match state.not_ready_reason() {
        None => (StatusCode::OK, "ready").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn status(State(state): State<Arc<NodeState>>) -> Json<NodeStatus> {
    Json(node_status(&state))
}

async fn cluster(State(state): State<Arc<NodeState>>) -> Json<serde_json::Value> {
    let address = format!(
        "{}:{}",
        state
            .config
            .advertise_address
            .clone()
            .unwrap_or_else(|| state.config.bind.to_string()),
        state.config.peer_port
    );
    let address = state
        .replication()
        .map(|replication| replication.local_address().to_string())
        .filter(|_| state.config.advertise_address.is_none())
        .unwrap_or(address);
    let mut members = vec![serde_json::json!({
        "name": state.node_name,
        "nodeId": state.node_id,
        "address": address,
        "state": state.lifecycle().as_str(),
        "self": true,
        "connected": true,
        "lagOps": 0,
        "digest": state.replication().map(|_| digest_text(&state)),
    })];
    if let Some(replication) = state.replication() {
        members.extend(replication.peers().into_iter().map(|peer| {
            serde_json::json!({
                "name": peer.name,
                "address": peer.address,
                "state": peer.state.map(|peer_state| peer_state.as_str()),
                "self": false,
                "connected": peer.connected,
                "lagOps": peer.lag_ops,
                "lastSeenMsAgo": peer.last_seen_ms_ago,
                "left": peer.left,
            })
        }));
    }
    Json(serde_json::json!({ "members": members }))
}

/// One number over every replication bucket digest, in hex: equal on two nodes holding the
/// same versions of every key (tests compare it to prove convergence).
fn digest_text(state: &NodeState) -> String {
    use crate::replication::Replica;
    let digest = state
        .engine
        .bucket_digests()
        .iter()
        .enumerate()
        .fold(0u64, |acc, (index, sum)| {
            acc.rotate_left(7) ^ sum.wrapping_add(index as u64)
        });
    format!("{digest:016x}")
}

async fn leave(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&state, &headers) {
        return response.into_response();
    }
    if matches!(state.lifecycle(), Lifecycle::Leaving | Lifecycle::Left) {
        return StatusCode::ACCEPTED.into_response();
    }
    // Unready at once; the flush runs in the background and ends in `left`.
    state.set_lifecycle(Lifecycle::Leaving);
    let timeout = std::time::Duration::from_secs(state.config.shutdown_timeout);
    let leaving = state.clone();
    tokio::spawn(async move { crate::cluster::leave_cluster(&leaving, timeout).await });
    StatusCode::ACCEPTED.into_response()
}

/// TEST ONLY (`--test-faults`): `{"blocked": ["host:port", ...]}` cuts replication links to
/// those peer addresses (an empty list heals). 404 unless the flag is set.
async fn test_faults(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let Some(faults) = state.test_faults.get() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let blocked: Vec<String> = body
        .get("blocked")
        .and_then(|blocked| blocked.as_array())
        .map(|blocked| {
            blocked
                .iter()
                .filter_map(|address| address.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tracing::warn!(?blocked, "test fault: blocking replication peers");
    faults.set_blocked(&blocked);
    Json(serde_json::json!({ "blocked": faults.blocked() })).into_response()
}

/// Waits for the write-ack of the write just made by this handler; 503 when it fails.
async fn settle_write(state: &NodeState) -> Result<(), ApiError> {
    crate::cluster::settle_http(state)
        .await
        .map_err(|message| error(StatusCode::SERVICE_UNAVAILABLE, &message))
}

async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    match crate::metrics::render(&state) {
        Ok(mut text) => {
            if let Some(replication) = state.replication() {
                // Before the OpenMetrics terminator, which must stay last.
                let terminated = text.ends_with("# EOF\n");
                if terminated {
                    text.truncate(text.len() - "# EOF\n".len());
                }
                text.push_str(&crate::replication::metrics::render(replication));
                if terminated {
                    text.push_str("# EOF\n");
                }
            }
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// An API error: a status and a message, answered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        message: message.to_string(),
    }
}

fn authorize(state: &NodeState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(password) = &state.password else {
        return Ok(());
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if presented == Some(password.as_str()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// 503 with Redis's `LOADING` text while the node recovers from disc.
fn available(state: &NodeState) -> Result<(), ApiError> {
    if state.recovering() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "LOADING Redis is loading the dataset in memory",
        ));
    }
    Ok(())
}

/// Admission of a session write in disc mode: 503 `MISCONF ...` while the write-ahead log is
/// failing (the write is not applied), a wait while its queue is full.
fn admit_write(state: &NodeState) -> Result<(), ApiError> {
    crate::disc::admit_write(&state.engine)
        .map_err(|refused| error(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()))
}

fn session_key(id: &str) -> Result<Bytes, ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(|c| c.is_control()) {
        return Err(error(StatusCode::BAD_REQUEST, "invalid session id"));
    }
    Ok(Bytes::from(format!("{SESSION_PREFIX}{id}")))
}

/// A session as the API returns it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody {
    /// The session id.
    pub id: String,
    /// The session data.
    pub data: serde_json::Value,
    /// Idle timeout in seconds.
    pub idle_timeout_seconds: u64,
    /// Milliseconds until it expires if untouched.
    pub expires_in_ms: u64,
}

/// PUT body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutSession {
    /// Arbitrary JSON data.
    pub data: serde_json::Value,
    /// Idle timeout in seconds; `--default-session-timeout` when absent.
    pub idle_timeout_seconds: Option<u64>,
}

/// Reads a session, sliding its expiry when `slide`.
fn read_session(
    state: &NodeState,
    id: &str,
    key: &Bytes,
    slide: bool,
) -> Result<SessionBody, ApiError> {
    let mut access = state.engine.key(key);
    let now = access.now();
    let (data, idle, expire_at) = match access.get() {
        None => return Err(error(StatusCode::NOT_FOUND, "session not found")),
        Some(entry) if entry.kind() != Kind::Hash => {
            return Err(error(
                StatusCode::CONFLICT,
                "key exists but is not a session hash",
            ));
        }
        Some(entry) => {
            let data = entry
                .hash_get(DATA_FIELD.as_bytes())
                .map(|data| data.to_vec());
            let idle = entry
                .hash_get(IDLE_FIELD.as_bytes())
                .and_then(|idle| std::str::from_utf8(idle).ok()?.parse::<u64>().ok());
            (data, idle, entry.expire_at())
        }
    };
    let data = match data {
        Some(data) => serde_json::from_slice(&data).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&data).into_owned())
        }),
        None => serde_json::Value::Null,
    };
    let mut expires_in_ms = expire_at.map_or(0, |at| at.saturating_sub(now));
    if let (true, Some(idle)) = (slide, idle) {
        let at = now.saturating_add(idle.saturating_mul(1000));
        access.write(Op::SetExpiry {
            key: key.clone(),
            expire_at: Some(at),
        });
        expires_in_ms = idle.saturating_mul(1000);
    }
    Ok(SessionBody {
        id: id.to_string(),
        data,
        idle_timeout_seconds: idle.unwrap_or(0),
        expires_in_ms,
    })
}

/// Query of GET /v1/sessions/{id}.
#[derive(Debug, Deserialize)]
pub struct GetQuery {
    /// `false` reads without sliding the expiry.
    pub touch: Option<bool>,
}

async fn get_session(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<GetQuery>,
) -> Response {
    let result = authorize(&state, &headers)
        .and_then(|_| available(&state))
        .and_then(|_| session_key(&id))
        .and_then(|key| read_session(&state, &id, &key, query.touch.unwrap_or(true)));
    match result {
        Ok(body) => Json(body).into_response(),
        Err(response) => response.into_response(),
    }
}

async fn touch_session(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = authorize(&state, &headers)
        .and_then(|_| available(&state))
        .and_then(|_| session_key(&id))
        .and_then(|key| read_session(&state, &id, &key, true));
    match result {
        Ok(body) => Json(body).into_response(),
        Err(response) => response.into_response(),
    }
}

async fn put_session(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<PutSession>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(response) = authorize(&state, &headers).and_then(|_| available(&state)) {
        return response.into_response();
    }
    let key = match session_key(&id) {
        Ok(key) => key,
        Err(response) => return response.into_response(),
    };
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(StatusCode::BAD_REQUEST, &rejection.body_text()).into_response()
        }
    };
    let idle = body
        .idle_timeout_seconds
        .unwrap_or(state.config.default_session_timeout);
    if idle == 0 || idle > state.config.max_session_timeout {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "idleTimeoutSeconds must be between 1 and {}",
                state.config.max_session_timeout
            ),
        )
        .into_response();
    }
    if !state.engine.make_room() {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            "OOM command not allowed when used memory > 'maxmemory'.",
        )
        .into_response();
    }
    let data = match serde_json::to_vec(&body.data) {
        Ok(data) => data,
        Err(_) => {
            return error(StatusCode::BAD_REQUEST, "data is not serialisable").into_response()
        }
    };
    if let Err(response) = admit_write(&state) {
        return response.into_response();
    }
    let created = {
        let mut access = state.engine.key(&key);
        let now = access.now();
        let created = access.get().is_none();
        let expire_at = Some(now.saturating_add(idle.saturating_mul(1000)));
        access.write(Op::Put {
            key: key.clone(),
            value: crate::store::Value::Hash(vec![
                (Bytes::from_static(DATA_FIELD.as_bytes()), Bytes::from(data)),
                (
                    Bytes::from_static(IDLE_FIELD.as_bytes()),
                    Bytes::from(idle.to_string()),
                ),
            ]),
            expire_at,
        });
        created
    };
    if let Err(response) = settle_write(&state).await {
        return response.into_response();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = SessionBody {
        id,
        data: body.data,
        idle_timeout_seconds: idle,
        expires_in_ms: idle.saturating_mul(1000),
    };
    (status, Json(body)).into_response()
}

async fn delete_session(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = authorize(&state, &headers).and_then(|_| available(&state)) {
        return response.into_response();
    }
    let key = match session_key(&id) {
        Ok(key) => key,
        Err(response) => return response.into_response(),
    };
    if let Err(response) = admit_write(&state) {
        return response.into_response();
    }
    {
        let mut access = state.engine.key(&key);
        if access.get().is_none() {
            return error(StatusCode::NOT_FOUND, "session not found").into_response();
        }
        access.write(Op::Delete { key: key.clone() });
    }
    if let Err(response) = settle_write(&state).await {
        return response.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Query of GET /v1/sessions.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Cursor from the previous page; `0` or absent to start.
    pub cursor: Option<u64>,
    /// Page size hint (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A page of session ids.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionPage {
    /// Session ids on this page.
    pub sessions: Vec<String>,
    /// Cursor for the next page, `"0"` when the listing is complete.
    pub next_cursor: String,
}

async fn list_sessions(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(response) = authorize(&state, &headers).and_then(|_| available(&state)) {
        return response.into_response();
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut cursor = query.cursor.unwrap_or(0);
    let mut sessions = Vec::new();
    let pattern = format!("{SESSION_PREFIX}*");
    // Keep scanning until the page has something or the iteration ends, so clients never see
    // an empty page with a non-zero cursor on a sparse keyspace.
    loop {
        cursor = state.engine.scan(cursor, limit, |entry| {
            if entry.kind() == Kind::Hash && glob::matches(pattern.as_bytes(), entry.key()) {
                let id = &entry.key()[SESSION_PREFIX.len()..];
                sessions.push(String::from_utf8_lossy(id).into_owned());
            }
        });
        if cursor == 0 || !sessions.is_empty() {
            break;
        }
    }
    Json(SessionPage {
        sessions,
        next_cursor: cursor.to_string(),
    })
    .into_response()
}
