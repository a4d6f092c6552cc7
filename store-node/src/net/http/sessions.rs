//! The session API over the shared keyspace.
//!
//! Session mapping: HTTP session `{id}` is the Redis hash `session:{id}` with the fields `data`
//! (the session's JSON, as text) and `idleTimeout` (seconds); its TTL is the idle timeout and a
//! GET slides it. Redis clients see and may write the same hashes, and keyspace notifications
//! announce what the API does to them as the Redis commands doing the same would: a PUT as
//! `hset` and `expire`, a sliding GET as `expire`, a DELETE as `del`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    admit_write, authorize, available, available_for_reads, error, settle_write, ApiError,
};
use crate::config::KeyspaceEvents;
use crate::node::NodeState;
use crate::store::{glob, Kind, Op};

/// Prefix of the Redis key that holds an HTTP session.
pub const SESSION_PREFIX: &str = "session:";
/// Hash field holding the session data (JSON text).
pub const DATA_FIELD: &str = "data";
/// Hash field holding the idle timeout in seconds.
pub const IDLE_FIELD: &str = "idleTimeout";
/// Longest session id accepted.
pub const MAX_ID_LEN: usize = 256;

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
            let data = entry.hash_field(DATA_FIELD.as_bytes());
            let idle = entry
                .hash_field(IDLE_FIELD.as_bytes())
                .and_then(|idle| std::str::from_utf8(&idle).ok()?.parse::<u64>().ok());
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
        // A read does not wait for its slide to be logged or replicated.
        let _slide = access.write(Op::SetExpiry {
            key: key.clone(),
            expire_at: Some(at),
        });
        state
            .notifier
            .notify(KeyspaceEvents::GENERIC, "expire", key);
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

pub(super) async fn get_session(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<GetQuery>,
) -> Response {
    let result = authorize(&state, &headers)
        .and_then(|_| available_for_reads(&state))
        .and_then(|_| session_key(&id))
        .and_then(|key| read_session(&state, &id, &key, query.touch.unwrap_or(true)));
    match result {
        Ok(body) => Json(body).into_response(),
        Err(response) => response.into_response(),
    }
}

pub(super) async fn touch_session(
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

pub(super) async fn put_session(
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
    if let Err(response) = admit_write(&state).await {
        return response.into_response();
    }
    let (created, receipt) = {
        let mut access = state.engine.key(&key);
        let now = access.now();
        let created = access.get().is_none();
        let expire_at = Some(now.saturating_add(idle.saturating_mul(1000)));
        let receipt = access.write(Op::Put {
            key: key.clone(),
            value: crate::store::Value::Hash(vec![
                (Bytes::from_static(DATA_FIELD.as_bytes()), Bytes::from(data)),
                (
                    Bytes::from_static(IDLE_FIELD.as_bytes()),
                    Bytes::from(idle.to_string()),
                ),
            ]),
            expire_at,
            keep_ttl: false,
        });
        state.notifier.notify(KeyspaceEvents::HASH, "hset", &key);
        state
            .notifier
            .notify(KeyspaceEvents::GENERIC, "expire", &key);
        (created, receipt)
    };
    if let Err(response) = settle_write(&state, receipt).await {
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

pub(super) async fn delete_session(
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
    if let Err(response) = admit_write(&state).await {
        return response.into_response();
    }
    let receipt = {
        let mut access = state.engine.key(&key);
        if access.get().is_none() {
            return error(StatusCode::NOT_FOUND, "session not found").into_response();
        }
        let receipt = access.write(Op::Delete { key: key.clone() });
        state.notifier.notify(KeyspaceEvents::GENERIC, "del", &key);
        receipt
    };
    if let Err(response) = settle_write(&state, receipt).await {
        return response.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Keys a session listing looks at per session asked for (`limit`) at most, and scan steps it
/// takes at most, in one request.
pub const LIST_BUDGET: usize = 10;

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

pub(super) async fn list_sessions(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(response) = authorize(&state, &headers).and_then(|_| available_for_reads(&state)) {
        return response.into_response();
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let mut cursor = query.cursor.unwrap_or(0);
    let mut sessions = Vec::new();
    let pattern = format!("{SESSION_PREFIX}*");
    // Keep scanning while the page is empty, so a sparse keyspace does not give a string of
    // empty pages, but never past LIST_BUDGET keys looked at per `limit` asked: one request
    // must not walk the whole keyspace on a runtime thread. Past it the page may be empty with
    // a non-zero cursor; the client follows `nextCursor` as usual.
    let mut looked_at = 0usize;
    let budget = limit.saturating_mul(LIST_BUDGET);
    // Each step also bounds the empty buckets it walks (to ten per key asked for).
    for _ in 0..LIST_BUDGET {
        cursor = state.engine.scan(cursor, limit, |entry| {
            looked_at += 1;
            if entry.kind() == Kind::Hash && glob::matches(pattern.as_bytes(), entry.key()) {
                let id = &entry.key()[SESSION_PREFIX.len()..];
                sessions.push(String::from_utf8_lossy(id).into_owned());
            }
        });
        if cursor == 0 || !sessions.is_empty() || looked_at >= budget {
            break;
        }
    }
    Json(SessionPage {
        sessions,
        next_cursor: cursor.to_string(),
    })
    .into_response()
}
