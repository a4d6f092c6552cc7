//! What a peer must prove before a link carries any message ([`PeerSecurity`]): with
//! `--tls-replication`, a certificate signed by the cluster's CA (mutual TLS, both ends); with
//! a peer key, the challenge-response of [`super::peer_auth`] (inside TLS when both are on).
//! A refused connection is closed before it can ask or send anything, logged with its remote
//! address, and counted by reason ([`PeerRefusals`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::peer_auth::{self, PeerAuthError, PeerKeys};
use crate::tls::TlsContext;

/// Peer connections refused, by the step that refused them.
#[derive(Debug, Default)]
pub struct PeerRefusals {
    /// The TLS handshake failed: no certificate, or one the cluster's CA did not sign.
    pub tls: AtomicU64,
    /// No peer key presented, or a proof made with another key.
    pub key: AtomicU64,
    /// The hello named another cluster or protocol version.
    pub hello: AtomicU64,
}

impl PeerRefusals {
    /// Counts one refusal.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` for each reason, as `/metrics` labels them.
    pub fn by_reason(&self) -> [(&'static str, u64); 3] {
        [
            ("tls", self.tls.load(Ordering::Relaxed)),
            ("key", self.key.load(Ordering::Relaxed)),
            ("hello", self.hello.load(Ordering::Relaxed)),
        ]
    }
}

/// How peers authenticate each other; the default authenticates nobody (tests, and a node
/// configured with neither TLS for peers nor a key).
#[derive(Debug, Clone)]
pub struct PeerSecurity {
    /// Mutual TLS when set (its peer configurations must exist: `--tls-replication`).
    pub tls: Option<Arc<TlsContext>>,
    /// The challenge-response when set.
    pub keys: Option<Arc<PeerKeys>>,
    /// Where refusals are counted.
    pub refusals: Arc<PeerRefusals>,
    /// Bound on the whole exchange before the first message.
    pub handshake_timeout: Duration,
}

impl Default for PeerSecurity {
    fn default() -> Self {
        PeerSecurity {
            tls: None,
            keys: None,
            refusals: Arc::default(),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// An authenticated peer stream: plain TCP or TLS over it.
pub enum Secured {
    /// No TLS (the key exchange, if any, is done).
    Plain(TcpStream),
    /// Mutual TLS as the acceptor.
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Mutual TLS as the dialer.
    Dialed(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Why a connection was not secured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureError {
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The key exchange failed.
    #[error("{0}")]
    Key(PeerAuthError),
    /// The exchange took longer than the handshake timeout.
    #[error("the peer did not complete the handshake within {0:?}")]
    TimedOut(Duration),
    /// `--tls-replication` is on but its configuration is missing (no CA).
    #[error("peer TLS is not configured")]
    NotConfigured,
}

async fn key_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: Option<&Arc<PeerKeys>>,
    dialing: bool,
) -> Result<(), SecureError> {
    let Some(keys) = keys else {
        return Ok(());
    };
    let result = if dialing {
        peer_auth::dial(stream, keys).await
    } else {
        peer_auth::accept(stream, keys).await
    };
    result.map_err(SecureError::Key)
}

impl PeerSecurity {
    /// Whether any check is configured.
    pub fn enabled(&self) -> bool {
        self.tls.is_some() || self.keys.is_some()
    }

    /// The acceptor's checks on a new connection from `remote`; a refusal is logged and
    /// counted here.
    pub async fn accept(&self, stream: TcpStream, remote: &str) -> Option<Secured> {
        let work = async {
            match &self.tls {
                Some(tls) => {
                    let acceptor = tls.peer_acceptor().ok_or(SecureError::NotConfigured)?;
                    let mut stream = acceptor
                        .accept(stream)
                        .await
                        .map_err(|error| SecureError::Tls(error.to_string()))?;
                    key_exchange(&mut stream, self.keys.as_ref(), false).await?;
                    Ok(Secured::Accepted(Box::new(stream)))
                }
                None => {
                    let mut stream = stream;
                    key_exchange(&mut stream, self.keys.as_ref(), false).await?;
                    Ok(Secured::Plain(stream))
                }
            }
        };
        let result = tokio::time::timeout(self.handshake_timeout, work)
            .await
            .unwrap_or(Err(SecureError::TimedOut(self.handshake_timeout)));
        match result {
            Ok(secured) => Some(secured),
            Err(reason) => {
                let counter = match &reason {
                    SecureError::Key(_) => &self.refusals.key,
                    _ => &self.refusals.tls,
                };
                PeerRefusals::count(counter);
                tracing::warn!(%remote, %reason, "refusing peer connection");
                None
            }
        }
    }

    /// The dialer's checks on a connection to `address` (`host:port`).
    pub async fn dial(&self, stream: TcpStream, address: &str) -> Result<Secured, SecureError> {
        let work = async {
            match &self.tls {
                Some(tls) => {
                    let connector = tls.peer_connector().ok_or(SecureError::NotConfigured)?;
                    let host = address
                        .rsplit_once(':')
                        .map_or(address, |(host, _)| host)
                        .trim_start_matches('[')
                        .trim_end_matches(']');
                    // The peer is verified by its CA, not its name (crate::tls::verifier); the
                    // name only has to be well formed.
                    let name = ServerName::try_from(host.to_string())
                        .or_else(|_| ServerName::try_from("peer.sessionstore.invalid".to_string()))
                        .map_err(|error| SecureError::Tls(error.to_string()))?;
                    let mut stream = connector
                        .connect(name, stream)
                        .await
                        .map_err(|error| SecureError::Tls(error.to_string()))?;
                    key_exchange(&mut stream, self.keys.as_ref(), true).await?;
                    Ok(Secured::Dialed(Box::new(stream)))
                }
                None => {
                    let mut stream = stream;
                    key_exchange(&mut stream, self.keys.as_ref(), true).await?;
                    Ok(Secured::Plain(stream))
                }
            }
        };
        tokio::time::timeout(self.handshake_timeout, work)
            .await
            .unwrap_or(Err(SecureError::TimedOut(self.handshake_timeout)))
    }
}
