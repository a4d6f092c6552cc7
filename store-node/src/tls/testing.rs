//! Test certificates for unit tests: a CA and node certificates for `localhost` and 127.0.0.1
//! it signed, written to a directory (generated per run, no key committed).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
    SerialNumber,
};

use super::{ClientAuth, TlsSettings};

/// A CA for tests.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("CA").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A node certificate with `serial`: (certificate PEM, key PEM).
    pub(crate) fn node(&self, serial: u8) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.serial_number = Some(SerialNumber::from(vec![serial]));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("signed");
        (certificate.pem(), key.serialize_pem())
    }

    /// Writes the CA and a node certificate into `dir`; settings for peers' mutual TLS.
    pub(crate) fn write(&self, dir: &Path, serial: u8) -> TlsSettings {
        std::fs::create_dir_all(dir).expect("dir");
        let (cert, key) = self.node(serial);
        std::fs::write(dir.join("tls.crt"), cert).expect("cert");
        std::fs::write(dir.join("tls.key"), key).expect("key");
        std::fs::write(dir.join("ca.crt"), &self.pem).expect("ca");
        TlsSettings {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            ca_file: Some(dir.join("ca.crt")),
            client_auth: ClientAuth::Yes,
            clients: true,
            peers: true,
        }
    }
}

/// A fresh temp directory.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("store-node-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
