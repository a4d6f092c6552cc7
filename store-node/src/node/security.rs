//! What a node checks before it trusts a connection, loaded from files at start and re-read
//! every `--reload-interval-ms` while it runs (`super::reload`): the TLS context
//! (`crate::tls`), the peer key and the count of refused peers (`crate::replication`), the
//! named users ([`super::users`]) and the operator's token for `POST /v1/cluster/leave`.
//! Kubernetes updates mounted Secrets in place; re-reading their contents picks up a rotated
//! certificate, key, password or token without a restart.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use super::users::{password_matches, Users, UsersError};
use crate::config::{Config, ConfigError};
use crate::replication::{PeerKeyError, PeerKeys, PeerRefusals, PeerSecurity};
use crate::tls::{TlsContext, TlsError};

/// A security file that keeps the node from starting.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The TLS files.
    #[error("{0}")]
    Tls(TlsError),
    /// The peer key file.
    #[error("{0}")]
    PeerKey(PeerKeyError),
    /// The users directory.
    #[error("{0}")]
    Users(UsersError),
    /// The operator token file.
    #[error("{0}")]
    OperatorToken(ConfigError),
}

/// The node's TLS context, peer key, users and operator token.
#[derive(Debug, Default)]
pub struct Security {
    /// TLS, when a certificate is configured.
    pub tls: Option<Arc<TlsContext>>,
    /// The peer key, when `--peer-key-file` is set.
    pub peer_keys: Option<Arc<PeerKeys>>,
    /// Peer connections refused, by reason.
    pub peer_refusals: Arc<PeerRefusals>,
    /// Named users.
    pub users: Users,
    operator_token: RwLock<Option<String>>,
}

impl Security {
    /// Loads every configured file; an error names the file and what is wrong with it.
    pub fn load(config: &Config) -> Result<Security, SecurityError> {
        let tls = config
            .tls_settings()
            .map(TlsContext::load)
            .transpose()
            .map_err(SecurityError::Tls)?
            .map(Arc::new);
        let peer_keys = config
            .peer_key_file
            .as_deref()
            .map(PeerKeys::load)
            .transpose()
            .map_err(SecurityError::PeerKey)?
            .map(Arc::new);
        let users = match &config.users_dir {
            Some(dir) => Users::load(dir).map_err(SecurityError::Users)?,
            None => Users::default(),
        };
        let operator_token = config
            .read_operator_token()
            .map_err(SecurityError::OperatorToken)?;
        Ok(Security {
            tls,
            peer_keys,
            peer_refusals: Arc::default(),
            users,
            operator_token: RwLock::new(operator_token),
        })
    }

    /// How peer connections authenticate, each step bounded by `timeout`.
    pub fn peer_security(&self, timeout: Duration) -> PeerSecurity {
        PeerSecurity {
            tls: self.tls.clone().filter(|tls| tls.settings().peers),
            keys: self.peer_keys.clone(),
            refusals: self.peer_refusals.clone(),
            handshake_timeout: timeout,
        }
    }

    /// Whether `presented` is the operator's token (never, without one).
    pub fn is_operator_token(&self, presented: &str) -> bool {
        self.operator_token
            .read()
            .as_deref()
            .is_some_and(|token| password_matches(token.as_bytes(), presented.as_bytes()))
    }

    /// Whether an operator token is configured.
    pub fn has_operator_token(&self) -> bool {
        self.operator_token.read().is_some()
    }

    /// Re-reads the operator token file; `Ok(true)` when the token changed.
    pub fn reload_operator_token(&self, config: &Config) -> Result<bool, ConfigError> {
        let token = config.read_operator_token()?;
        let mut current = self.operator_token.write();
        let changed = *current != token;
        *current = token;
        Ok(changed)
    }
}
