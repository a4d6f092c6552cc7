//! The node's runtime: binds the RESP and HTTP listeners, runs the accept loop with its limits,
//! the active expiry sweep, and a graceful drain on a [`CancellationToken`]. [`start`] returns a
//! [`RunningNode`] with the bound addresses, so tests start nodes on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::{execute, ClientState};
use crate::config::{Config, ConfigError, StorageMode};
use crate::io_threads::IoThreads;
use crate::protocol::{Limits, RequestParser};
use crate::state::{Lifecycle, NodeState};
use crate::store::{EngineConfig, MemoryEngine};

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// The RESP listener could not bind.
    #[error("failed to bind the RESP listener on {address}: {source}")]
    BindResp {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP listener could not bind.
    #[error("failed to bind the HTTP listener on {address}: {source}")]
    BindHttp {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The RESP connection threads could not start.
    #[error("failed to start the RESP connection threads: {0}")]
    IoThreads(std::io::Error),
    /// A listener's local address could not be read.
    #[error("failed to read the bound address: {0}")]
    LocalAddress(std::io::Error),
    /// Replication could not start.
    #[error("{0}")]
    Replication(String),
    /// Disc mode could not start (damaged or unreadable data directory).
    #[error("{0}")]
    Disc(crate::disc::DiscError),
    /// Connections were still open when the shutdown bound expired.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimeout(Duration),
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    /// Where the RESP listener is bound.
    pub resp_addr: SocketAddr,
    /// Where the HTTP listener is bound.
    pub http_addr: SocketAddr,
    /// Shared state (engine, metrics).
    pub state: Arc<NodeState>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    shutdown_timeout: Duration,
}

impl RunningNode {
    /// The token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Goes unready, stops accepting, lets connections finish the commands they have received,
    /// and waits for everything to end within `--shutdown-timeout`.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits for the node to stop after its token was cancelled (by a signal handler or
    /// [`RunningNode::shutdown`]).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.shutdown.cancelled().await;
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        self.state.set_lifecycle(Lifecycle::Leaving);
        self.tasks.close();
        // Unready, RESP closed, then replication flushed to the peers (bounded).
        crate::cluster::leave_cluster(&self.state, self.shutdown_timeout).await;
        let result = tokio::time::timeout_at(deadline, self.tasks.wait()).await;
        if let Some(replication) = self.state.replication() {
            replication.shutdown();
        }
        crate::disc::close(&self.state.engine);
        self.state.set_lifecycle(Lifecycle::Left);
        result.map_err(|_| ServerError::ShutdownTimeout(self.shutdown_timeout))
    }
}

/// Validates the configuration, builds the engine (with the cgroup memory limit unless
/// `--max-memory` is set) and starts serving.
pub async fn start(config: Config) -> Result<RunningNode, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let password = config.read_password().map_err(ServerError::Config)?;
    let limit_bytes = if config.max_memory > 0 {
        config.max_memory
    } else {
        crate::cgroup::memory_limit(std::path::Path::new("/sys/fs/cgroup")).unwrap_or(0)
    };
    let engine = Arc::new(MemoryEngine::new(EngineConfig {
        limit_bytes,
        high_watermark: config.high_watermark,
        low_watermark: config.low_watermark,
        policy: config.eviction_policy,
    }));
    let resp_address = SocketAddr::new(config.bind, config.resp_port);
    let http_address = SocketAddr::new(config.bind, config.http_port);
    let resp_listener =
        TcpListener::bind(resp_address)
            .await
            .map_err(|source| ServerError::BindResp {
                address: resp_address,
                source,
            })?;
    let http_listener =
        TcpListener::bind(http_address)
            .await
            .map_err(|source| ServerError::BindHttp {
                address: http_address,
                source,
            })?;
    let resp_addr = resp_listener
        .local_addr()
        .map_err(ServerError::LocalAddress)?;
    let http_addr = http_listener
        .local_addr()
        .map_err(ServerError::LocalAddress)?;
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout);
    let sweep_interval = Duration::from_millis(config.expiry_sweep_interval_ms);
    let disc_mode = config.storage_mode == StorageMode::Disc;
    let state = Arc::new(NodeState::new(config, engine, password));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Shutting down stops serving clients: connections wait on `stop_serving` alone.
    tasks.spawn({
        let (state, shutdown) = (state.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            state.stop_serving.cancel();
        }
    });
    let io_threads = IoThreads::start(state.config.resolved_io_threads(), &state, &tasks)
        .map_err(ServerError::IoThreads)?;
    let mut listeners = Some((resp_listener, http_listener, io_threads));
    if disc_mode {
        // Listeners open before recovery so clients and probes get answers while a large data
        // directory loads: LOADING for data commands, 503 on /readyz, progress in /v1/status.
        state.set_lifecycle(Lifecycle::Loading);
        if let Some((resp, http, io_threads)) = listeners.take() {
            serve_listeners(resp, http, io_threads, &state, &shutdown, &tasks);
        }
    }
    let stop_listeners = |tasks: TaskTracker, shutdown: CancellationToken| async move {
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
    };
    let disc = if disc_mode {
        tracing::info!(%resp_addr, %http_addr, data_dir = %state.config.data_dir.display(), "recovering from disc; answering LOADING meanwhile");
        match crate::disc::open(&state.config, &state.engine, &state.recovery).await {
            Ok(opened) => Some((opened.node_id, opened.max_hlc)),
            Err(error) => {
                stop_listeners(tasks, shutdown).await;
                return Err(ServerError::Disc(error));
            }
        }
    } else {
        None
    };
    if state.config.replicated() {
        // Before serving data commands, so every write is stamped and replicated.
        if let Err(error) = crate::cluster::start_replication(&state, disc).await {
            stop_listeners(tasks, shutdown).await;
            return Err(ServerError::Replication(error.to_string()));
        }
    }
    if let Some((resp, http, io_threads)) = listeners.take() {
        // RAM mode: nothing to load, so the listeners open once replication runs.
        serve_listeners(resp, http, io_threads, &state, &shutdown, &tasks);
    }
    state.finish_recovery();
    tasks.spawn(sweep_loop(state.clone(), sweep_interval, shutdown.clone()));
    if disc.is_some() {
        tasks.spawn(crate::disc::snapshot_loop(
            state.engine.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(
        %resp_addr,
        %http_addr,
        node = %state.node_name,
        limit_bytes,
        policy = state.engine.memory().policy.as_str(),
        auth = state.password.is_some(),
        "store-node serving"
    );
    Ok(RunningNode {
        resp_addr,
        http_addr,
        state,
        shutdown,
        tasks,
        shutdown_timeout,
    })
}

/// Spawns the RESP accept loop and the HTTP server.
fn serve_listeners(
    resp_listener: TcpListener,
    http_listener: TcpListener,
    io_threads: IoThreads,
    state: &Arc<NodeState>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(accept_loop(
        resp_listener,
        io_threads,
        state.clone(),
        shutdown.clone(),
        tasks.clone(),
    ));
    let router = crate::http::router(state.clone());
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let serve = axum::serve(http_listener, router)
            .with_graceful_shutdown(http_shutdown.cancelled_owned());
        if let Err(error) = serve.await {
            tracing::error!(%error, "HTTP server failed");
        }
    });
}

async fn sweep_loop(state: Arc<NodeState>, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // 256 buckets per shard per tick (about 16k buckets, well under a millisecond), each
        // shard locked separately, so a million expiring keys never stall clients.
        let removed = state.engine.sweep_expired(256);
        if removed > 0 {
            tracing::debug!(removed, "expired keys swept");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    io_threads: IoThreads,
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
            tasks.spawn(async move {
                let _ = socket
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        }
        let _ = socket.set_nodelay(true);
        // The connection thread decrements it when the connection ends.
        state.clients.fetch_add(1, Ordering::Relaxed);
        if !io_threads.serve(socket, peer) {
            state.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Replies buffered beyond this are written before parsing more requests of a pipeline.
const MAX_PENDING_OUTPUT: usize = 1 << 20;

/// Serves one RESP client until it quits, fails, or `stop` (the node stops serving) is
/// cancelled; runs on a connection thread ([`IoThreads`]).
pub(crate) async fn serve_connection(
    state: &NodeState,
    mut socket: TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
) {
    let authenticated = state.password.is_none();
    let mut client = ClientState::new(state.next_client_id(), authenticated, peer.to_string());
    let mut parser = RequestParser::new(Limits::default());
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut args = Vec::new();
    let idle = state.config.client_idle_timeout;
    let mut acks = crate::cluster::WriteAcks::new(state);
    tracing::debug!(%peer, client = client.id, "client connected");
    loop {
        // Execute every complete request in the buffer, then answer them with one write.
        let mut executed = 0;
        loop {
            let (end, ran) = process_batch(
                state,
                &mut client,
                &mut parser,
                &mut input,
                &mut args,
                &mut output,
                &mut acks,
            );
            executed += ran;
            match end {
                BatchEnd::NeedInput | BatchEnd::Close => break,
                BatchEnd::OutputFull => {
                    acks.settle(state, &mut output).await;
                    if socket.write_all(&output).await.is_err() {
                        return;
                    }
                    output.clear();
                }
                BatchEnd::ProtocolError(error) => {
                    state
                        .metrics
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, client = client.id, %error, "closing client: protocol error");
                    output
                        .extend_from_slice(format!("-ERR Protocol error: {error}\r\n").as_bytes());
                    let _ = socket.write_all(&output).await;
                    return;
                }
            }
        }
        state.metrics.flush(&mut client.metrics);
        if !output.is_empty() {
            let waited = acks.settle(state, &mut output).await;
            if executed == 1 && !waited {
                // One request per read: answer after every other ready connection on this
                // thread had its turn, as Redis's event loop writes its replies once per
                // iteration, so the client finds them together instead of being woken for
                // each one (docs/benchmarks.md: un-pipelined SET 0.86 -> 1.00 of Redis).
                // A pipelining client sends a burst and gets one back already; making it
                // wait cost `SET -d 1024 -P 16` a tenth. Waiting for the log or for
                // replication already let the others run.
                crate::io_threads::yield_to_queued().await;
            }
            if socket.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
            if output.capacity() > 4 * MAX_PENDING_OUTPUT {
                output = BytesMut::with_capacity(16 * 1024);
            }
        }
        if client.close || stop.is_cancelled() {
            return;
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        if input.is_empty() && input.capacity() > 4 * READ_AHEAD_LIMIT {
            input = BytesMut::with_capacity(16 * 1024);
        }
        let spare = input.capacity() - input.len();
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            read = read_with_idle_timeout(&mut socket, &mut input, idle) => read,
        };
        match read {
            Ok(0) => return,
            Ok(read) => {
                if read == spare {
                    read_rest_of_burst(&socket, &mut input, READ_AHEAD_LIMIT);
                }
            }
            Err(ReadEnd::Idle) => {
                tracing::debug!(%peer, client = client.id, "closing idle client");
                return;
            }
            Err(ReadEnd::Io) => return,
        }
    }
}

/// [`read_rest_of_burst`] stops once the buffer holds this much.
const READ_AHEAD_LIMIT: usize = 256 * 1024;

/// After a read that filled the buffer, reads what else the client has already sent, without
/// waiting, until the socket is drained or the buffer holds `limit` bytes. Redis reads
/// as much as its query buffer holds for the same reason: a burst executed together is answered
/// with one write. Reading 16 KiB at a time answered a pipeline of sixteen 1 KiB SETs (17 KB)
/// in two writes, so the client paid a second read and event for every pipeline
/// (docs/benchmarks.md: 50k TCP segments per 200k SETs against Redis's 25.5k).
fn read_rest_of_burst(socket: &TcpStream, input: &mut BytesMut, limit: usize) {
    while input.len() < limit {
        input.reserve(input.len().max(16 * 1024));
        let spare = input.capacity() - input.len();
        match socket.try_read_buf(input) {
            Ok(read) if read == spare => continue,
            // A short read drained the socket; an error or the end of the stream shows at the
            // next read, after the requests already read are answered.
            _ => return,
        }
    }
}

/// Why [`process_batch`] stopped.
enum BatchEnd {
    /// The buffer holds no complete request.
    NeedInput,
    /// QUIT: write the replies and close.
    Close,
    /// Replies reached [`MAX_PENDING_OUTPUT`]: write them, then continue.
    OutputFull,
    /// A malformed request.
    ProtocolError(crate::protocol::ProtocolError),
}

/// Runs the complete requests in `input`, encoding replies into `output`; returns why it
/// stopped and how many requests it ran. The batch holds the
/// node's transaction gate for reading; an EXEC takes it for writing, so a transaction's
/// commands never interleave with other clients' commands.
fn process_batch(
    state: &NodeState,
    client: &mut ClientState,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    args: &mut Vec<bytes::Bytes>,
    output: &mut BytesMut,
    acks: &mut crate::cluster::WriteAcks,
) -> (BatchEnd, usize) {
    client.metrics.begin_batch();
    let mut gate = Some(state.transaction_gate.read());
    let mut executed = 0;
    loop {
        match parser.parse(input, args) {
            Ok(true) => {
                let reply = if client.multi.is_some() && args[0].eq_ignore_ascii_case(b"exec") {
                    drop(gate.take());
                    let exclusive = state.transaction_gate.write();
                    let reply = execute(state, client, args);
                    drop(exclusive);
                    gate = Some(state.transaction_gate.read());
                    reply
                } else {
                    execute(state, client, args)
                };
                executed += 1;
                let start = output.len();
                reply.encode(client.protocol, output);
                acks.note(start, output.len());
                if client.close {
                    return (BatchEnd::Close, executed);
                }
                if output.len() >= MAX_PENDING_OUTPUT {
                    return (BatchEnd::OutputFull, executed);
                }
            }
            Ok(false) => return (BatchEnd::NeedInput, executed),
            Err(error) => return (BatchEnd::ProtocolError(error), executed),
        }
    }
}

enum ReadEnd {
    Idle,
    Io,
}

async fn read_with_idle_timeout(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    idle_seconds: u64,
) -> Result<usize, ReadEnd> {
    if idle_seconds == 0 {
        return socket.read_buf(input).await.map_err(|_| ReadEnd::Io);
    }
    match tokio::time::timeout(Duration::from_secs(idle_seconds), socket.read_buf(input)).await {
        Ok(result) => result.map_err(|_| ReadEnd::Io),
        Err(_) => Err(ReadEnd::Idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of loopback sockets.
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_takes_the_rest_of_the_burst() {
        let (mut client, server) = pair().await;
        let burst: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&burst).await.expect("write");
        client.flush().await.expect("flush");
        server.readable().await.expect("readable");
        // Let the whole burst reach the server's receive queue.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut input = BytesMut::with_capacity(16 * 1024);
        let spare = input.capacity() - input.len();
        let read = server.try_read_buf(&mut input).expect("first read");
        assert_eq!(read, spare, "the first read fills the buffer");
        read_rest_of_burst(&server, &mut input, READ_AHEAD_LIMIT);
        assert_eq!(&input[..], &burst[..]);
    }

    #[tokio::test]
    async fn reading_the_rest_of_a_burst_stops_at_the_limit() {
        let (mut client, server) = pair().await;
        let limit = 64 * 1024;
        let burst = vec![7u8; 4 * limit];
        let writer = tokio::spawn(async move {
            client.write_all(&burst).await.expect("write");
            client
        });
        server.readable().await.expect("readable");
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut input = BytesMut::with_capacity(16 * 1024);
        server.try_read_buf(&mut input).expect("first read");
        read_rest_of_burst(&server, &mut input, limit);
        // The last read may take a whole doubled buffer past the limit, never more.
        assert!(
            (limit..2 * limit).contains(&input.len()),
            "read {} bytes",
            input.len()
        );
        drop(server);
        let _ = writer.await;
    }
}
