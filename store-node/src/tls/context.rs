//! [`TlsContext`]: the rustls configurations of a node, built from its TLS files and rebuilt
//! when their contents change. Every new connection takes the configuration current at its
//! handshake; established connections keep theirs, so replacing a certificate (Kubernetes
//! updates a mounted Secret in place) needs no restart and breaks no client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::material::{self, FileContents};
use super::verifier::PeerCertVerifier;
use super::x509::{certificate_info, CertificateInfo};
use super::{ClientAuth, TlsError, TlsSettings};

/// The configurations built from one reading of the files.
struct Loaded {
    files: FileContents,
    resp: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    peer_server: Option<Arc<ServerConfig>>,
    peer_client: Option<Arc<ClientConfig>>,
    info: Option<CertificateInfo>,
}

/// What [`TlsContext::reload_if_changed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are as last loaded (or as last failed).
    Unchanged,
    /// New files were loaded; new connections use them.
    Reloaded(Option<CertificateInfo>),
    /// The files changed but are not usable; the previous configuration stays.
    Failed(TlsError),
}

/// Why the last reload failed, so the same failure is reported once.
#[derive(PartialEq, Eq)]
enum Failure {
    Read(String),
    Contents(FileContents),
}

/// A node's TLS configurations, swapped as a whole when the files change.
pub struct TlsContext {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    last_failure: Mutex<Option<Failure>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsContext")
            .field("settings", &self.settings)
            .field("certificate", &self.certificate())
            .finish_non_exhaustive()
    }
}

fn read_files(settings: &TlsSettings) -> Result<FileContents, TlsError> {
    Ok(FileContents {
        cert: material::read(&settings.cert_file)?,
        key: material::read(&settings.key_file)?,
        ca: settings
            .ca_file
            .as_deref()
            .map(material::read)
            .transpose()?,
    })
}

fn config_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Config(error.to_string())
}

fn build(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    files: FileContents,
) -> Result<Loaded, TlsError> {
    let chain = material::certificates(&settings.cert_file, &files.cert)?;
    let key = material::private_key(&settings.key_file, &files.key)?;
    let mismatch = |error: rustls::Error| TlsError::KeyMismatch {
        cert: settings.cert_file.display().to_string(),
        key: settings.key_file.display().to_string(),
        reason: error.to_string(),
    };
    // Checks that the key loads and belongs to the certificate, naming both files.
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), provider)
        .map_err(mismatch)?;
    let roots = match (&settings.ca_file, &files.ca) {
        (Some(path), Some(pem)) => Some(Arc::new(material::roots(path, pem)?)),
        _ => None,
    };
    let server = |verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>| {
        ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)
    };
    let need_roots =
        |needed_by: &'static str| roots.clone().ok_or(TlsError::CaRequired { needed_by });
    let verify = |roots: Arc<RootCertStore>, required: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        builder.build().map_err(config_error)
    };
    let client_auth = if settings.clients {
        settings.client_auth
    } else {
        ClientAuth::No
    };
    let resp_verifier = match client_auth {
        ClientAuth::No => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Yes => verify(need_roots("--tls-auth-clients yes")?, true)?,
        ClientAuth::Optional => verify(need_roots("--tls-auth-clients optional")?, false)?,
    };
    let resp = server(resp_verifier)?;
    // HTTP asks for a client certificate whenever there is a CA to verify it with, but never
    // requires one: kubelet probes and Prometheus present none. The session API checks it.
    let http_verifier = match &roots {
        Some(roots) if client_auth != ClientAuth::No => verify(roots.clone(), false)?,
        _ => WebPkiClientVerifier::no_client_auth(),
    };
    let mut http = server(http_verifier)?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (peer_server, peer_client) = if settings.peers {
        let roots = need_roots("--tls-replication yes")?;
        let peer_server = server(verify(roots.clone(), true)?)?;
        let peer_client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerCertVerifier::new(
                roots,
                provider.clone(),
            )))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)?;
        (Some(Arc::new(peer_server)), Some(Arc::new(peer_client)))
    } else {
        (None, None)
    };
    let info = chain.first().and_then(|der| certificate_info(der));
    Ok(Loaded {
        files,
        resp: Arc::new(resp),
        http: Arc::new(http),
        peer_server,
        peer_client,
        info,
    })
}

impl TlsContext {
    /// Reads and checks the files; an error names the file and what is wrong with it.
    pub fn load(settings: TlsSettings) -> Result<TlsContext, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = read_files(&settings)?;
        let loaded = build(&settings, &provider, files)?;
        Ok(TlsContext {
            settings,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            last_failure: Mutex::new(None),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// The settings it was loaded with.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    fn current(&self) -> Arc<Loaded> {
        self.current.read().clone()
    }

    /// The acceptor for a new RESP client (the current certificate).
    pub fn resp_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().resp.clone())
    }

    /// The acceptor for a new HTTP client.
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().http.clone())
    }

    /// The acceptor for a dialing peer (mutual TLS), when peers speak TLS.
    pub fn peer_acceptor(&self) -> Option<TlsAcceptor> {
        self.current().peer_server.clone().map(TlsAcceptor::from)
    }

    /// The connector for dialing a peer (mutual TLS), when peers speak TLS.
    pub fn peer_connector(&self) -> Option<TlsConnector> {
        self.current().peer_client.clone().map(TlsConnector::from)
    }

    /// Serial and expiry of the certificate served now.
    pub fn certificate(&self) -> Option<CertificateInfo> {
        self.current().info.clone()
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Changes of the files that could not be loaded since start.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Reads the files and, when their contents differ from what is loaded, builds and
    /// installs new configurations. Unusable files leave the current configuration in place
    /// (a certificate written before its key is retried at the next call) and are reported
    /// once per distinct content.
    pub fn reload_if_changed(&self) -> Reload {
        let files = match read_files(&self.settings) {
            Ok(files) => files,
            Err(error) => return self.failed(Failure::Read(error.to_string()), error),
        };
        if files == self.current.read().files {
            *self.last_failure.lock() = None;
            return Reload::Unchanged;
        }
        match build(&self.settings, &self.provider, files.clone()) {
            Ok(loaded) => {
                let info = loaded.info.clone();
                *self.current.write() = Arc::new(loaded);
                *self.last_failure.lock() = None;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Reload::Reloaded(info)
            }
            Err(error) => self.failed(Failure::Contents(files), error),
        }
    }

    fn failed(&self, failure: Failure, error: TlsError) -> Reload {
        let mut last = self.last_failure.lock();
        if last.as_ref() == Some(&failure) {
            return Reload::Unchanged;
        }
        *last = Some(failure);
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
        Reload::Failed(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{temp_dir, TestCa};

    #[test]
    fn bad_files_are_named() {
        let dir = temp_dir("tls-errors");
        let ca = TestCa::new();
        let mut settings = ca.write(&dir, 1);
        let missing = dir.join("missing.crt");
        let error = TlsContext::load(TlsSettings {
            cert_file: missing.clone(),
            ..settings.clone()
        })
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("failed to read {}: ", missing.display())),
            "{error}"
        );
        std::fs::write(
            dir.join("bad.key"),
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = TlsContext::load(TlsSettings {
            key_file: dir.join("bad.key"),
            ..settings.clone()
        })
        .unwrap_err();
        assert!(
            matches!(error, TlsError::Pem { .. } | TlsError::NoKey { .. }),
            "{error}"
        );
        std::fs::write(dir.join("empty.key"), "").unwrap();
        assert_eq!(
            TlsContext::load(TlsSettings {
                key_file: dir.join("empty.key"),
                ..settings.clone()
            })
            .unwrap_err()
            .to_string(),
            format!(
                "{} holds no PEM private key (expected a PKCS#8, PKCS#1 or SEC1 key block)",
                dir.join("empty.key").display()
            )
        );
        settings.ca_file = None;
        assert_eq!(
            TlsContext::load(settings.clone()).unwrap_err().to_string(),
            "--tls-auth-clients yes needs --tls-ca-cert-file"
        );
        settings.client_auth = ClientAuth::No;
        assert_eq!(
            TlsContext::load(settings.clone()).unwrap_err().to_string(),
            "--tls-replication yes needs --tls-ca-cert-file"
        );
        settings.peers = false;
        let context = TlsContext::load(settings).expect("no CA needed");
        assert!(context.peer_acceptor().is_none());
        assert_eq!(
            context.certificate().map(|info| info.serial),
            Some("01".into())
        );
    }

    #[test]
    fn changed_files_are_reloaded_and_broken_ones_kept_out() {
        let dir = temp_dir("tls-reload-unit");
        let ca = TestCa::new();
        let settings = ca.write(&dir, 1);
        let context = TlsContext::load(settings.clone()).expect("load");
        assert_eq!(context.reload_if_changed(), Reload::Unchanged);
        let (cert, key) = ca.node(2);
        std::fs::write(&settings.key_file, key).unwrap();
        std::fs::write(&settings.cert_file, cert).unwrap();
        match context.reload_if_changed() {
            Reload::Reloaded(Some(info)) => assert_eq!(info.serial, "02"),
            other => panic!("expected a reload, got {other:?}"),
        }
        assert_eq!(context.reloads(), 1);
        // A certificate written before its key: refused until the key follows.
        let (cert, key) = ca.node(3);
        std::fs::write(&settings.cert_file, cert).unwrap();
        assert!(matches!(
            context.reload_if_changed(),
            Reload::Failed(TlsError::KeyMismatch { .. })
        ));
        assert_eq!(
            context.reload_if_changed(),
            Reload::Unchanged,
            "reported once"
        );
        assert_eq!(
            context.certificate().map(|info| info.serial),
            Some("02".into())
        );
        std::fs::write(&settings.key_file, key).unwrap();
        assert!(matches!(context.reload_if_changed(), Reload::Reloaded(_)));
        assert_eq!(
            context.certificate().map(|info| info.serial),
            Some("03".into())
        );
        assert_eq!((context.reloads(), context.reload_failures()), (2, 1));
    }
}
