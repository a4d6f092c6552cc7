//! The RESP listeners (plain and TLS): accept clients up to `--max-clients` and hand each to a
//! connection thread, which runs a TLS client's handshake.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::io_threads::IoThreads;
use crate::node::NodeState;

/// Accepts RESP clients until the node shuts down or stops serving; `tls` when the listener
/// is the TLS port.
pub async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    io_threads: Arc<IoThreads>,
    state: Arc<NodeState>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.stop_serving.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        state
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        if state.clients.load(Ordering::Relaxed) >= state.config.max_clients {
            state
                .metrics
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, max = state.config.max_clients, "client refused: limit reached");
            if !tls {
                // Over TLS the refusal would need a handshake first; the client just sees the
                // connection close.
                tasks.spawn(async move {
                    let _ = socket
                        .write_all(b"-ERR max number of clients reached\r\n")
                        .await;
                });
            }
            continue;
        }
        let _ = socket.set_nodelay(true);
        // The connection thread decrements it when the connection ends.
        state.clients.fetch_add(1, Ordering::Relaxed);
        if !io_threads.serve(socket, peer, tls) {
            state.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
