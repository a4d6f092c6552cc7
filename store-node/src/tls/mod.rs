//! TLS for the node's three listeners (RESP, HTTP, peers) with rustls and its `ring`
//! provider: reading and checking the certificate, key and CA files ([`material`]), the
//! server and client configurations built from them and swapped when the files change
//! ([`TlsContext`]), the verifier peers use for each other ([`verifier`]) and the two facts of a
//! certificate the node reports ([`x509`]). A leaf: it knows files and rustls, nothing of the
//! node.

mod context;
pub mod material;
#[cfg(test)]
pub(crate) mod testing;
pub mod verifier;
pub mod x509;

use std::path::PathBuf;

pub use context::{Reload, TlsContext};
pub use x509::CertificateInfo;

/// Whether TLS clients of the RESP listener must present a certificate (Redis's
/// `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate signed by the CA is required.
    Yes,
    /// No certificate is asked for.
    No,
    /// A certificate is asked for and verified when presented, but not required.
    Optional,
}

impl ClientAuth {
    /// Redis's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Yes => "yes",
            ClientAuth::No => "no",
            ClientAuth::Optional => "optional",
        }
    }
}

/// The files TLS is configured from, and how clients are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, the node's certificate first (`--tls-cert-file`).
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (`--tls-key-file`).
    pub key_file: PathBuf,
    /// PEM CA certificates that client and peer certificates must chain to
    /// (`--tls-ca-cert-file`).
    pub ca_file: Option<PathBuf>,
    /// Clients' certificates (`--tls-auth-clients`).
    pub client_auth: ClientAuth,
    /// Whether clients connect over TLS (a TLS RESP port or HTTPS): only then does
    /// `client_auth` need the CA.
    pub clients: bool,
    /// Whether peers speak mutual TLS (`--tls-replication`): needs the CA.
    pub peers: bool,
}

/// What is wrong with the TLS files; every variant names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("failed to read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A file is not valid PEM.
    #[error("{path} is not valid PEM: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{path} holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block)")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The key file holds no private key block.
    #[error("{path} holds no PEM private key (expected a PKCS#8, PKCS#1 or SEC1 key block)")]
    NoKey {
        /// The file.
        path: String,
    },
    /// The key could not be loaded or does not belong to the certificate.
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls's reason.
        reason: String,
    },
    /// A CA certificate is not usable as a trust anchor.
    #[error("{path} holds a certificate that is not a usable CA: {reason}")]
    BadCa {
        /// The file.
        path: String,
        /// webpki's reason.
        reason: String,
    },
    /// The CA file is needed (client or peer certificates are verified) but not configured.
    #[error("{needed_by} needs --tls-ca-cert-file")]
    CaRequired {
        /// The setting that needs it.
        needed_by: &'static str,
    },
    /// rustls refused the configuration.
    #[error("failed to build the TLS configuration: {0}")]
    Config(String),
}
