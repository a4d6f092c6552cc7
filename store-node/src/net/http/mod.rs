//! The HTTP API, one file per audience: [`sessions`] (the session API over the shared
//! keyspace), [`status`] (probes and `/v1/status`, the operator's contract), [`cluster`]
//! (`/v1/cluster`, leaving, test faults) and [`prometheus`] (`/metrics`, with the security
//! counters of [`security_metrics`]); [`serve`] is the listener (HTTP or HTTPS, timeouts and
//! caps). Here: the router and what the handlers share (errors, authorization, admission).

pub mod cluster;
pub mod prometheus;
pub mod security_metrics;
pub mod serve;
pub mod sessions;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::node::users::any_password_matches;
use crate::node::NodeState;
use crate::store::WriteReceipt;
use crate::tls::ClientAuth;
use serve::{guard_request, ConnectionInfo, RequestGuard};

pub use sessions::{DATA_FIELD, IDLE_FIELD, MAX_ID_LEN, SESSION_PREFIX};
pub use status::{node_status, storage_report, NodeStatus};

/// The router over a node's state, with the request cap and timeout of its configuration.
pub fn router(state: Arc<NodeState>) -> Router {
    let guard = Arc::new(RequestGuard::new(
        state.config.http_max_concurrent_requests,
        Duration::from_secs(state.config.http_request_timeout),
    ));
    let sessions = Router::new()
        .route("/v1/sessions", get(sessions::list_sessions))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get_session)
                .put(sessions::put_session)
                .delete(sessions::delete_session),
        )
        .route("/v1/sessions/{id}/touch", post(sessions::touch_session))
        .route_layer(from_fn_with_state(
            state.clone(),
            require_client_certificate,
        ));
    Router::new()
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/v1/status", get(status::status))
        .route("/v1/cluster", get(cluster::cluster))
        .route("/v1/cluster/leave", post(cluster::leave))
        .route("/metrics", get(prometheus::metrics))
        .route("/v1/test/faults", post(cluster::test_faults))
        .merge(sessions)
        .layer(from_fn_with_state(guard, guard_request))
        .with_state(state)
}

/// Middleware of the session API: over HTTPS with `--tls-auth-clients yes`, a client must have
/// presented a certificate the CA signed (probes, /metrics and /v1/status need none).
async fn require_client_certificate(
    State(state): State<Arc<NodeState>>,
    request: Request,
    next: Next,
) -> Response {
    let info = request.extensions().get::<ConnectionInfo>().copied();
    let required = state.config.tls_auth_clients == ClientAuth::Yes;
    if let Some(info) = info {
        if info.tls && required && !info.client_certificate {
            return error(
                StatusCode::UNAUTHORIZED,
                "a client certificate signed by the cluster's CA is required",
            )
            .into_response();
        }
    }
    next.run(request).await
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

pub(super) fn error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        message: message.to_string(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// The session API's check: the client password as a bearer token, compared in constant time
/// (no password, no check).
pub(super) fn authorize(state: &NodeState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accepted) = &state.password else {
        return Ok(());
    };
    let presented = bearer(headers);
    // Each line of the password file is an accepted password, as for AUTH.
    if presented.is_some_and(|presented| any_password_matches(accepted, presented.as_bytes())) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// 503 with Redis's `LOADING` text while the node loads (recovers from disc, or is not
/// synced with its peers yet): a session write or a read of a partial keyspace.
pub(super) fn available(state: &NodeState) -> Result<(), ApiError> {
    if state.data_loading() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "LOADING Redis is loading the dataset in memory",
        ));
    }
    Ok(())
}

/// [`available`] for a read: also answered while loading under `replica-serve-stale-data`.
pub(super) fn available_for_reads(state: &NodeState) -> Result<(), ApiError> {
    if state.serves_stale_reads() {
        return Ok(());
    }
    available(state)
}

/// Admission of a session write in disc mode: an asynchronous wait while the write-ahead
/// log's queue is full, then 503 `MISCONF ...` while the log is failing (the write is not
/// applied).
pub(super) async fn admit_write(state: &NodeState) -> Result<(), ApiError> {
    crate::node::disc::wait_for_log_room(state).await;
    crate::node::disc::admit_write(state)
        .map_err(|refused| error(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()))
}

/// Waits for what the receipt of a handler's write asks (the log, the write-ack); 503 when it
/// fails.
pub(super) async fn settle_write(state: &NodeState, receipt: WriteReceipt) -> Result<(), ApiError> {
    crate::node::write_ack::settle(state, receipt)
        .await
        .map_err(|message| error(StatusCode::SERVICE_UNAVAILABLE, &message))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{HeaderMap, HeaderValue, StatusCode};

    use super::authorize;
    use crate::config::Config;
    use crate::node::NodeState;
    use crate::store::{EngineConfig, MemoryEngine};

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(axum::http::header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn every_line_of_the_password_file_is_an_accepted_token() {
        let engine = Arc::new(MemoryEngine::new(EngineConfig::default()));
        let state = NodeState::new(Config::for_tests(), engine, Some("new\nold".into()));
        for token in ["new", "old"] {
            assert!(authorize(&state, &bearer(token)).is_ok(), "{token}");
        }
        for token in ["", "ne", "new old"] {
            let refused = authorize(&state, &bearer(token)).err();
            assert_eq!(
                refused.map(|e| e.status),
                Some(StatusCode::UNAUTHORIZED),
                "{token:?}"
            );
        }
        assert!(authorize(&state, &HeaderMap::new()).is_err());
    }
}
