//! Reading the TLS files into what rustls needs, checking each the way a user wants to hear
//! about it: the file that is wrong and what is wrong with it.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::TlsError;

/// The bytes of the TLS files as last read: a change in any of them is a reload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileContents {
    /// The certificate file.
    pub cert: Vec<u8>,
    /// The key file.
    pub key: Vec<u8>,
    /// The CA file, when configured.
    pub ca: Option<Vec<u8>>,
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    })
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// The certificates of a PEM file, in order.
pub fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(path, error))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certificates)
}

/// The first private key of a PEM file.
pub fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.display().to_string(),
        },
        other => pem_error(path, other),
    })
}

/// The trust anchors of a PEM CA file.
pub fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for certificate in certificates(path, pem)? {
        store.add(certificate).map_err(|error| TlsError::BadCa {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
    }
    Ok(store)
}
