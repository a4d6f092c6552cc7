//! RESP connection threads: each runs its own single-threaded event loop, and a connection
//! stays on the thread it was given for its whole life, as in Redis's event loop.
//!
//! On the node's multi-threaded runtime, connection tasks were woken on one worker and stolen
//! by another: every batch of readiness events woke the idle worker (a futex wake and a
//! context switch) and moved sockets and buffers between cores. With two workers and a client
//! on two cores, that cost about a quarter more CPU per request than one worker
//! (docs/benchmarks.md). Threads that each own their connections and block only in their own
//! `epoll_wait` keep that efficiency and still use every core. The node's runtime keeps the
//! accept loop, HTTP, replication and timers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::connection::serve_connection;
use crate::node::NodeState;

/// A connection handed to a thread.
struct Handoff {
    socket: std::net::TcpStream,
    peer: SocketAddr,
    tls: bool,
}

struct Worker {
    sender: mpsc::UnboundedSender<Handoff>,
    /// Connections the thread serves now.
    connections: Arc<AtomicUsize>,
}

/// The RESP connection threads of a node. Dropping it lets each thread finish the
/// connections it serves and exit.
pub struct IoThreads {
    workers: Vec<Worker>,
}

impl IoThreads {
    /// Starts `count` threads (at least one) serving connections of `state`; `tasks` tracks
    /// every connection, so the node's shutdown waits for them.
    pub fn start(
        count: usize,
        state: &Arc<NodeState>,
        tasks: &TaskTracker,
    ) -> std::io::Result<IoThreads> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (sender, receiver) = mpsc::unbounded_channel();
            let connections = Arc::new(AtomicUsize::new(0));
            let thread_state = state.clone();
            let thread_tasks = tasks.clone();
            let thread_connections = connections.clone();
            std::thread::Builder::new()
                .name(format!("resp-io-{index}"))
                .spawn(move || {
                    runtime.block_on(run(
                        thread_state,
                        thread_tasks,
                        receiver,
                        thread_connections,
                    ));
                })?;
            workers.push(Worker {
                sender,
                connections,
            });
        }
        Ok(IoThreads { workers })
    }

    /// Hands an accepted connection (from the TLS port when `tls`) to the thread serving the
    /// fewest; `false` when it could not be handed over (it is closed, and logged).
    pub fn serve(&self, socket: tokio::net::TcpStream, peer: SocketAddr, tls: bool) -> bool {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|worker| worker.connections.load(Ordering::Relaxed))
        else {
            return false;
        };
        let socket = match socket.into_std() {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%peer, %error, "client dropped: socket could not be handed over");
                return false;
            }
        };
        worker.connections.fetch_add(1, Ordering::Relaxed);
        if worker.sender.send(Handoff { socket, peer, tls }).is_err() {
            worker.connections.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, "client dropped: its connection thread has stopped");
            return false;
        }
        true
    }
}

/// A thread's loop: serves every connection it is handed until the node drops its
/// [`IoThreads`], then lets them finish.
async fn run(
    state: Arc<NodeState>,
    tasks: TaskTracker,
    mut receiver: mpsc::UnboundedReceiver<Handoff>,
    connections: Arc<AtomicUsize>,
) {
    let local = TaskTracker::new();
    // One token per thread: the connections of this thread wait on it without contending with
    // other threads (a shared token's waiter list sits behind a lock).
    let stop = state.stop_serving.child_token();
    while let Some(Handoff { socket, peer, tls }) = receiver.recv().await {
        let socket = match tokio::net::TcpStream::from_std(socket) {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%peer, %error, "client dropped: socket could not be registered");
                connections.fetch_sub(1, Ordering::Relaxed);
                state.clients.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
        };
        let state = state.clone();
        let stop = stop.clone();
        let connections = connections.clone();
        local.spawn(tasks.track_future(async move {
            serve_connection(&state, socket, peer, &stop, tls).await;
            connections.fetch_sub(1, Ordering::Relaxed);
            state.clients.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    local.close();
    local.wait().await;
}
