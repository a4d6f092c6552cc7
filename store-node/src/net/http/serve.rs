//! The HTTP listener: plain HTTP or HTTPS (`--tls-http yes`), one task per connection on
//! hyper, with the bounds a server facing untrusted clients needs: a time to send a request's
//! headers (`--http-header-timeout`, also the keep-alive idle bound), a time to send the body
//! and be answered (`--http-request-timeout`), a cap on connections
//! (`--http-max-connections`) and on requests served at once
//! (`--http-max-concurrent-requests`, 503 beyond). Each request carries its connection's
//! [`ConnectionInfo`], which the session API reads to require client certificates.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::node::NodeState;

/// `{"error": message}` with `status`, as every API error is answered.
fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// What a request knows of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// Whether the connection is HTTPS.
    pub tls: bool,
    /// Whether the client presented a certificate the CA signed (rustls verified it).
    pub client_certificate: bool,
}

/// The cap on requests served at once, shared by a router's requests.
#[derive(Debug)]
pub struct RequestGuard {
    permits: Semaphore,
    timeout: Duration,
}

impl RequestGuard {
    /// At most `concurrent` requests at once, each within `timeout`.
    pub fn new(concurrent: usize, timeout: Duration) -> RequestGuard {
        RequestGuard {
            permits: Semaphore::new(concurrent),
            timeout,
        }
    }
}

/// Middleware: 503 beyond the concurrency cap, 408 when reading the body and answering take
/// longer than the request timeout.
pub async fn guard_request(
    State(guard): State<Arc<RequestGuard>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = guard.permits.try_acquire() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent requests",
        );
    };
    match tokio::time::timeout(guard.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the request was not received and answered in time",
        ),
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish (each
/// connection is a task of `tasks`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: Arc<NodeState>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let max_connections = state.config.http_max_connections;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= max_connections {
            open.fetch_sub(1, Ordering::Relaxed);
            state
                .metrics
                .http_rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, max_connections, "HTTP connection refused: limit reached");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (state, router, shutdown, open) = (
            state.clone(),
            router.clone(),
            shutdown.clone(),
            open.clone(),
        );
        tasks.spawn(async move {
            let header_timeout = Duration::from_secs(state.config.http_header_timeout);
            let tls = state
                .security
                .tls
                .as_ref()
                .filter(|_| state.config.tls_http)
                .map(|tls| tls.http_acceptor());
            match tls {
                None => {
                    let info = ConnectionInfo {
                        remote,
                        tls: false,
                        client_certificate: false,
                    };
                    serve_connection(stream, info, router, header_timeout, &shutdown).await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let client_certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .is_some_and(|certificates| !certificates.is_empty());
                            let info = ConnectionInfo {
                                remote,
                                tls: true,
                                client_certificate,
                            };
                            serve_connection(stream, info, router, header_timeout, &shutdown).await;
                        }
                        Ok(Err(error)) => {
                            state
                                .metrics
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%remote, %error, "HTTPS handshake failed");
                        }
                        Err(_) => {
                            state
                                .metrics
                                .tls_handshake_failures
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%remote, "HTTPS handshake timed out");
                        }
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    info: ConnectionInfo,
    router: Router,
    header_timeout: Duration,
    shutdown: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = tower::ServiceExt::map_request(router, move |mut request: Request<_>| {
        request.extensions_mut().insert(info);
        request
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(remote = %info.remote, %error, "HTTP connection ended");
            }
        }
        () = shutdown.cancelled() => {
            // Requests in flight finish; idle keep-alive connections close now.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
