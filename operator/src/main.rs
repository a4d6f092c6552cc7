//! The SessionCluster operator binary: parses the configuration (docs/contract.md), serves
//! `/metrics`, `/healthz` and `/readyz`, takes the leader Lease, and runs the controller until
//! SIGTERM/SIGINT or until leadership is lost (then it exits so the pod restarts as a standby).
//! A failure to start prints one line on stderr (what failed, what to do) and exits with 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use futures::FutureExt;
use prometheus_client::registry::Registry;
use sessionstore_operator::controller::{self, Context, ControllerConfig};
use sessionstore_operator::metrics::Metrics;
use sessionstore_operator::node_client::HttpNodeApi;
use shutdown_signal::Shutdown;

/// Operator configuration; every option also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "sessionstore-operator",
    version,
    about = "Runs SessionCluster resources"
)]
struct Args {
    /// Namespaces to watch, comma separated; empty means all namespaces.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    watch_namespaces: Vec<String>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Take a Lease before reconciling, so several replicas can run with one active.
    #[arg(long, env = "OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "OPERATOR_LEASE_NAME",
        default_value = "sessionstore-operator"
    )]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease and on events; defaults to the hostname.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// store-node image for clusters whose spec names none.
    #[arg(long, env = "OPERATOR_STORE_NODE_IMAGE", default_value = concat!("sessionstore/store-node:", env!("CARGO_PKG_VERSION")))]
    store_node_image: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "OPERATOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log filter, e.g. `info` or `sessionstore_operator=debug`.
    #[arg(long, env = "OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

mod shutdown_signal {
    //! A shutdown signal that can be cloned into every controller and the HTTP server.

    use tokio::sync::watch;

    /// Fires once; every clone sees it.
    #[derive(Clone)]
    pub struct Shutdown(pub watch::Receiver<bool>);

    impl Shutdown {
        /// Completes when shutdown was requested.
        pub async fn wait(mut self) {
            while !*self.0.borrow() {
                if self.0.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

async fn metrics_handler(State(state): State<HttpState>) -> (StatusCode, String) {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (StatusCode::OK, body),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

fn init_logging(args: &Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("invalid --log-level {:?}", args.log_level))?;
    // Colour codes only on a terminal: in a pod they end up as escape sequences in `kubectl logs`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// What failed to start, why, and what to do about it, on one line.
#[derive(Debug)]
struct StartError {
    what: String,
    advice: &'static str,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.advice)
    }
}

impl std::error::Error for StartError {}

/// Wraps `error` with `advice`.
fn advise(error: impl std::fmt::Display, advice: &'static str) -> StartError {
    StartError {
        what: error.to_string(),
        advice,
    }
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sessionstore-operator: failed to build the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sessionstore-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "sessionstore-operator".to_owned())
    });
    let namespaces: Vec<String> = args
        .watch_namespaces
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = Shutdown(stop_rx);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let ready = Arc::new(AtomicBool::new(false));
    let state = HttpState {
        registry: Arc::new(registry),
        ready: ready.clone(),
    };
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|error| {
            advise(
                format_args!("cannot listen on {}: {error}", args.http_addr),
                if error.kind() == std::io::ErrorKind::AddrInUse {
                    "another process uses that port: stop it, or set --http-addr (OPERATOR_HTTP_ADDR)"
                } else {
                    "check --http-addr (OPERATOR_HTTP_ADDR)"
                },
            )
        })?;
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(server_shutdown.wait())
            .await
    });

    let client = kube::Client::try_default().await.map_err(|error| {
        advise(
            format_args!("cannot connect to the Kubernetes API: {error}"),
            "run it in a pod with its ServiceAccount, or point KUBECONFIG at a cluster",
        )
    })?;
    ready.store(true, Ordering::Relaxed);

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(HttpNodeApi::default()),
        ControllerConfig {
            default_image: args.store_node_image.clone(),
            operator_namespace: args.lease_namespace.clone(),
            ..ControllerConfig::default()
        },
        metrics,
        &identity,
    ));

    if args.leader_election {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &args.lease_name)
            .with_namespace(&args.lease_namespace)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .context("creating the lease manager")?;
        let (mut leader, lease_task) = manager.watch().await;
        tracing::info!(lease = %args.lease_name, identity = %identity, "waiting for leadership");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => changed.context("lease manager stopped")?,
                _ = shutdown.clone().wait() => {
                    drop(leader);
                    let _ = lease_task.await;
                    return Ok(());
                }
            }
        }
        tracing::info!(identity = %identity, "leading; starting the controller");
        // Stop reconciling as soon as the lease is lost: another replica takes over.
        let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
        let mut leader_watch = leader.clone();
        let outer = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = async {
                    while leader_watch.changed().await.is_ok() {
                        if !*leader_watch.borrow() {
                            tracing::error!("leadership lost; stopping");
                            return;
                        }
                    }
                } => {},
                _ = outer.wait() => {},
            }
            let _ = lost_tx.send(true);
        });
        let stop = Shutdown(lost_rx);
        controller::run(ctx, namespaces, stop.wait().shared()).await;
        drop(leader);
        match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
            Ok(Ok(Ok(manager))) => {
                let _ = manager.release().await;
            }
            _ => tracing::warn!("lease not released cleanly"),
        }
    } else {
        controller::run(ctx, namespaces, shutdown.clone().wait().shared()).await;
    }
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}
