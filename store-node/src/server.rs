//! Start-up and shutdown of a node, the one place that puts the parts together: the engine,
//! the node state with its security files (`crate::node::security`), disc recovery and
//! replication (`crate::node`), the RESP (plain and TLS) and HTTP listeners (`crate::net`) and
//! the background tasks (active expiry, snapshots, re-reading the security files), with a
//! graceful drain on a [`CancellationToken`]. [`start`] returns a [`RunningNode`] with the
//! bound addresses, so tests start nodes on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError, StorageMode};
use crate::net::io_threads::IoThreads;
use crate::node::security::{Security, SecurityError};
use crate::node::{Lifecycle, NodeState};
use crate::store::{EngineConfig, MemoryEngine};

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// A security file (TLS, peer key, users, operator token) is missing or invalid.
    #[error("{0}")]
    Security(SecurityError),
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
    Disc(crate::node::disc::DiscError),
    /// Connections were still open when the shutdown bound expired.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimeout(Duration),
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    /// Where RESP clients connect: the plain listener, or the TLS one when the plain port is
    /// disabled.
    pub resp_addr: SocketAddr,
    /// Where the TLS RESP listener is bound, when there is one.
    pub tls_addr: Option<SocketAddr>,
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
        crate::node::cluster::leave_cluster(&self.state, self.shutdown_timeout).await;
        let result = tokio::time::timeout_at(deadline, self.tasks.wait()).await;
        if let Some(replication) = self.state.replication() {
            replication.shutdown();
        }
        crate::node::disc::close(&self.state);
        self.state.set_lifecycle(Lifecycle::Left);
        result.map_err(|_| ServerError::ShutdownTimeout(self.shutdown_timeout))
    }
}

/// Validates the configuration, builds the engine (with the smaller of `--max-memory` and the
/// cgroup's memory limit) and starts serving.
pub async fn start(config: Config) -> Result<RunningNode, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    if config.test_clock_offset_ms != 0 {
        tracing::warn!(
            offset_ms = config.test_clock_offset_ms,
            "--test-clock-offset-ms is set: this node's clock is shifted (tests only)"
        );
        crate::store::set_test_clock_offset(config.test_clock_offset_ms);
    }
    let password = config.read_password().map_err(ServerError::Config)?;
    let limit_bytes = crate::node::memory::memory_limit(&config);
    crate::node::memory::tune_allocator();
    let engine = Arc::new(MemoryEngine::new(EngineConfig {
        limit_bytes,
        high_watermark: config.high_watermark,
        low_watermark: config.low_watermark,
        policy: config.eviction_policy,
    }));
    let security = Security::load(&config).map_err(ServerError::Security)?;
    let bind = config.bind;
    let bind_resp = |port: Option<u16>| async move {
        let Some(port) = port else {
            return Ok(None);
        };
        let address = SocketAddr::new(bind, port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::BindResp { address, source })?;
        let bound = listener.local_addr().map_err(ServerError::LocalAddress)?;
        Ok::<_, ServerError>(Some((listener, bound)))
    };
    let plain = bind_resp(config.resp_listen_port()).await?;
    let tls = bind_resp(config.tls_listen_port()).await?;
    let http_address = SocketAddr::new(config.bind, config.http_port);
    let http_listener =
        TcpListener::bind(http_address)
            .await
            .map_err(|source| ServerError::BindHttp {
                address: http_address,
                source,
            })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(ServerError::LocalAddress)?;
    let tls_addr = tls.as_ref().map(|(_, bound)| *bound);
    let Some(resp_addr) = plain.as_ref().map(|(_, bound)| *bound).or(tls_addr) else {
        return Err(ServerError::Config(ConfigError::NoRespListener));
    };
    let resp_listeners = RespListeners {
        plain: plain.map(|(listener, _)| listener),
        tls: tls.map(|(listener, _)| listener),
    };
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout);
    let sweep_interval = Duration::from_millis(config.expiry_sweep_interval_ms);
    let disc_mode = config.storage_mode == StorageMode::Disc;
    let mut node_state = NodeState::new(config, engine, password);
    node_state.security = security;
    let state = Arc::new(node_state);
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    // Shutting down stops serving clients: connections wait on `stop_serving` alone. A script
    // that has not written is stopped as by SCRIPT KILL, or its connection would hold the
    // shutdown until the bound; one that wrote runs to its end (stopping it half way would
    // leave half its writes on every node).
    tasks.spawn({
        let (state, shutdown) = (state.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            state.stop_serving.cancel();
            state.scripts.kill();
        }
    });
    let io_threads = IoThreads::start(state.config.resolved_io_threads(), &state, &tasks)
        .map_err(ServerError::IoThreads)?;
    let mut listeners = Some((resp_listeners, http_listener, io_threads));
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
        tracing::info!(%resp_addr, ?tls_addr, %http_addr, data_dir = %state.config.data_dir.display(), "recovering from disc; answering LOADING meanwhile");
        match crate::node::disc::open(&state.config, &state.engine, &state.hook, &state.recovery)
            .await
        {
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
        if let Err(error) = crate::node::cluster::start_replication(&state, disc).await {
            stop_listeners(tasks, shutdown).await;
            return Err(ServerError::Replication(error.to_string()));
        }
    }
    if let Some((resp, http, io_threads)) = listeners.take() {
        // RAM mode: nothing to load, so the listeners open once replication runs.
        serve_listeners(resp, http, io_threads, &state, &shutdown, &tasks);
    }
    state.finish_recovery();
    crate::node::sampler::sample_once(&state);
    tasks.spawn(crate::node::sampler::memory_loop(
        state.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(sweep_loop(state.clone(), sweep_interval, shutdown.clone()));
    tasks.spawn(crate::node::reload::reload_loop(
        state.clone(),
        shutdown.clone(),
    ));
    if disc.is_some() {
        tasks.spawn(crate::node::disc::snapshot_loop(
            state.clone(),
            shutdown.clone(),
        ));
    }
    let certificate = state
        .security
        .tls
        .as_ref()
        .and_then(|tls| tls.certificate());
    tracing::info!(
        %resp_addr,
        ?tls_addr,
        %http_addr,
        https = state.config.tls_http,
        node = %state.node_name,
        limit_bytes,
        policy = state.engine.memory().policy.as_str(),
        auth = state.password.is_some(),
        users = state.security.users.len(),
        certificate_serial = certificate.as_ref().map(|info| info.serial.as_str()),
        certificate_not_after_unix = certificate.as_ref().map(|info| info.not_after_unix),
        "store-node serving"
    );
    Ok(RunningNode {
        resp_addr,
        tls_addr,
        http_addr,
        state,
        shutdown,
        tasks,
        shutdown_timeout,
    })
}

/// The bound RESP listeners.
struct RespListeners {
    plain: Option<TcpListener>,
    tls: Option<TcpListener>,
}

/// Spawns the RESP accept loops and the HTTP server.
fn serve_listeners(
    resp: RespListeners,
    http_listener: TcpListener,
    io_threads: IoThreads,
    state: &Arc<NodeState>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    let io_threads = Arc::new(io_threads);
    for (listener, tls) in [(resp.plain, false), (resp.tls, true)] {
        if let Some(listener) = listener {
            tasks.spawn(crate::net::resp::accept_loop(
                listener,
                tls,
                io_threads.clone(),
                state.clone(),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
    }
    let router = crate::net::http::router(state.clone());
    tasks.spawn(crate::net::http::serve::serve(
        http_listener,
        router,
        state.clone(),
        shutdown.clone(),
        tasks.clone(),
    ));
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
