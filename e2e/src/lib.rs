//! End-to-end test helpers: a kube client from `KUBECONFIG`, a temporary namespace per test,
//! SessionCluster manifests sized for a small test node, waits with bounded timeouts that print
//! what the cluster looked like when they gave up, port-forwards from the test process to pods
//! and to the client Service, a small HTTP client for the session API, and a traffic generator
//! that remembers every acknowledged session so a test can prove none was lost.
//!
//! Every test in `tests/` is `#[ignore]`: `cargo test --workspace` without a cluster passes, and
//! `e2e/run.sh` runs them with `-- --ignored` against a cluster where the operator is installed.

pub mod availability;
pub mod cluster;
pub mod diagnostics;
pub mod forward;
pub mod http;
pub mod namespace;
pub mod sessions;
pub mod wait;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::Client;

/// Namespace of the operator's Helm release (`E2E_OPERATOR_NAMESPACE`, default
/// `sessionstore-system`).
pub fn operator_namespace() -> String {
    std::env::var("E2E_OPERATOR_NAMESPACE").unwrap_or_else(|_| "sessionstore-system".to_owned())
}

/// Name of the operator's Deployment and leader Lease (`E2E_OPERATOR_NAME`, default
/// `sessionstore-operator`, the chart's full name for a release of that name).
pub fn operator_name() -> String {
    std::env::var("E2E_OPERATOR_NAME").unwrap_or_else(|_| "sessionstore-operator".to_owned())
}

/// A client for the cluster `KUBECONFIG` (or in-cluster config) points at.
pub async fn client() -> anyhow::Result<Client> {
    Client::try_default()
        .await
        .context("failed to build a kube client from KUBECONFIG (is a cluster reachable?)")
}

/// Prints one measured line of a test, prefixed so `run.sh` can collect them into its summary.
pub fn report(test: &str, line: impl std::fmt::Display) {
    println!("E2E-MEASURE {test}: {line}");
}

/// A stopwatch that formats as seconds with one decimal.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

impl std::fmt::Display for Stopwatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}s", self.0.elapsed().as_secs_f64())
    }
}
