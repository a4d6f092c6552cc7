//! Re-reading the security files while the node runs ([`reload_loop`], every
//! `--reload-interval-ms`): the TLS certificate, the peer key, the users and the operator
//! token of [`super::security::Security`]. A file that changed but cannot be used leaves the
//! previous one in use and is logged once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::state::NodeState;
use crate::tls::Reload;

/// What the last reload of each file reported, so a broken file is logged once.
#[derive(Default)]
struct LastErrors {
    tls: Option<String>,
    peer_key: Option<String>,
    users: Option<String>,
    operator_token: Option<String>,
}

fn report(last: &mut Option<String>, what: &str, outcome: Result<bool, String>) {
    match outcome {
        Ok(changed) => {
            if changed {
                tracing::info!(what, "reloaded");
            }
            *last = None;
        }
        Err(error) => {
            if last.as_deref() != Some(error.as_str()) {
                tracing::error!(what, %error, "failed to reload; the previous one stays in use");
                *last = Some(error);
            }
        }
    }
}

/// Re-reads every configured file once.
fn reload_once(state: &NodeState, last: &mut LastErrors) {
    let security = &state.security;
    if let Some(tls) = &security.tls {
        match tls.reload_if_changed() {
            Reload::Unchanged => {}
            Reload::Reloaded(info) => {
                tracing::info!(
                    serial = info.as_ref().map(|info| info.serial.as_str()),
                    not_after_unix = info.as_ref().map(|info| info.not_after_unix),
                    "TLS certificate reloaded: new connections use it"
                );
                last.tls = None;
            }
            Reload::Failed(error) => {
                report(&mut last.tls, "TLS certificate", Err(error.to_string()))
            }
        }
    }
    if let Some(keys) = &security.peer_keys {
        let outcome = keys.reload_if_changed().map_err(|error| error.to_string());
        report(&mut last.peer_key, "peer key", outcome);
    }
    if state.config.users_dir.is_some() {
        let outcome = security
            .users
            .reload_if_changed()
            .map_err(|error| error.to_string());
        report(&mut last.users, "users", outcome);
    }
    if state.config.operator_token_file.is_some() {
        let outcome = security
            .reload_operator_token(&state.config)
            .map_err(|error| error.to_string());
        report(&mut last.operator_token, "operator token", outcome);
    }
}

/// Re-reads the security files every `--reload-interval-ms` until shutdown.
pub async fn reload_loop(state: Arc<NodeState>, shutdown: CancellationToken) {
    let interval = Duration::from_millis(state.config.reload_interval_ms);
    let mut last = LastErrors::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        // Reading a few small files; off the runtime's workers all the same.
        let reloading = state.clone();
        last = match tokio::task::spawn_blocking(move || {
            reload_once(&reloading, &mut last);
            last
        })
        .await
        {
            Ok(last) => last,
            Err(error) => {
                tracing::error!(%error, "the reload of security files failed");
                LastErrors::default()
            }
        };
    }
}
