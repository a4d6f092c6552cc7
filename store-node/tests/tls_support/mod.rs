//! Test certificates, generated per run with rcgen (no private key is committed): a CA, node
//! certificates for `localhost` and `127.0.0.1` it signed (with a chosen serial, to tell which
//! one a client was served), client certificates, and a second CA for "another cluster".

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// A CA that signs node and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// PEM of the CA certificate.
    pub pem: String,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The DER of the certificate, to compare with what a server presented.
    pub der: Vec<u8>,
}

impl Ca {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A node certificate for `localhost` and 127.0.0.1 with `serial`, usable as server and
    /// client (peers use it both ways).
    pub fn node(&self, serial: u64) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "store-node");
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(params)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("signed");
        Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().to_vec(),
        }
    }
}

/// A fresh directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("store-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The files of a node's TLS configuration.
pub struct NodeFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl NodeFiles {
    /// Writes `issued` and the CA into `dir`.
    pub fn write(dir: &Path, ca: &Ca, issued: &Issued) -> NodeFiles {
        let files = NodeFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        };
        files.replace(issued);
        std::fs::write(&files.ca, &ca.pem).expect("write CA");
        files
    }

    /// Replaces certificate and key as Kubernetes does for a mounted Secret: new files beside
    /// the old, then one rename each (readers never see half a file).
    pub fn replace(&self, issued: &Issued) {
        for (path, text) in [(&self.key, &issued.key_pem), (&self.cert, &issued.cert_pem)] {
            let staged = path.with_extension("new");
            std::fs::write(&staged, text).expect("write staged");
            std::fs::rename(&staged, path).expect("rename");
        }
    }
}

/// A rustls client configuration trusting `ca`, with a client certificate when given.
pub fn client_config(ca: &Ca, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(certificate.expect("CA PEM")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some(issued) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client chain"),
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("client key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects over TLS to `address` as `localhost`; the handshake's result, and on success the
/// DER of the certificate the server presented.
pub async fn tls_connect(
    address: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
)> {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    // TLS 1.3 reports a refused client certificate only at the first exchange after the
    // handshake: a PING makes the server answer or close.
    stream.write_all(b"").await?;
    let presented = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.to_vec())
        .unwrap_or_default();
    Ok((stream, presented))
}
