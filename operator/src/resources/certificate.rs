//! The certificates of a TLS SessionCluster without a Secret of its own: a CA (`<name>-ca`,
//! ten years) and a node certificate it signs (`<name>-tls`, 90 days, renewed at two thirds of
//! its life), with every name a client or a peer reaches a node by; and the validity of any
//! node certificate, generated or not. Key generation uses ring's system random source; no
//! API call here.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sessionstore_api::names;

/// Life of the generated CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Life of a generated node certificate.
pub const NODE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Leeway before `now` in `notBefore`, for nodes whose clock is slightly behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate that could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen failed (key generation, signing, a name).
    #[error("failed to issue the {what}: {reason}")]
    Issue {
        /// Which certificate.
        what: &'static str,
        /// rcgen's error.
        reason: String,
    },
    /// The PEM holds no certificate that parses.
    #[error("{0}")]
    Parse(String),
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// When a certificate is valid, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

impl Validity {
    /// When to renew: two thirds into the certificate's life (cert-manager's default).
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// The DNS names of the node certificate: both Services (short, namespaced and full), every
/// pod through the headless Service (a wildcard, since pods come and go) and `localhost`.
pub fn node_dns_names(cluster: &str, namespace: &str) -> Vec<String> {
    let mut dns = Vec::new();
    for service in [
        names::client_service(cluster),
        names::headless_service(cluster),
    ] {
        dns.push(service.clone());
        dns.push(format!("{service}.{namespace}"));
        dns.push(format!("{service}.{namespace}.svc"));
        dns.push(format!("{service}.{namespace}.svc.cluster.local"));
    }
    let headless = names::headless_service(cluster);
    dns.push(format!("*.{headless}.{namespace}.svc"));
    dns.push(format!("*.{headless}.{namespace}.svc.cluster.local"));
    dns.push("localhost".to_owned());
    dns
}

/// The name the operator verifies a node's certificate against when it calls the node by IP:
/// the pod's DNS name through the headless Service.
pub fn pod_server_name(cluster: &str, namespace: &str, pod: &str) -> String {
    format!("{pod}.{}.{namespace}.svc", names::headless_service(cluster))
}

fn issue_error(what: &'static str) -> impl Fn(rcgen::Error) -> CertificateError {
    move |error| CertificateError::Issue {
        what,
        reason: error.to_string(),
    }
}

/// Unix seconds as a certificate time (a macro: rcgen does not name its time type).
macro_rules! at {
    ($unix_seconds:expr) => {
        rcgen::date_time_ymd(1970, 1, 1)
            + Duration::from_secs(i64::max($unix_seconds, 0).unsigned_abs())
    };
}

/// The CA's parameters: the same for issuing the CA and for signing with it, so the node
/// certificate's issuer is the CA's subject.
fn ca_params(cluster: &str, namespace: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(
        DnType::CommonName,
        format!("sessionstore CA {namespace}/{cluster}"),
    );
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A new CA for `cluster`, valid from an hour before `now` for [`CA_VALIDITY`].
pub fn issue_ca(cluster: &str, namespace: &str, now: i64) -> Result<Issued, CertificateError> {
    let what = "cluster CA";
    let mut params = ca_params(cluster, namespace);
    params.not_before = at!(now - BACKDATE.as_secs() as i64);
    params.not_after = at!(now + CA_VALIDITY.as_secs() as i64);
    let key = KeyPair::generate().map_err(issue_error(what))?;
    let cert = params.self_signed(&key).map_err(issue_error(what))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A node certificate for `cluster` signed by its CA (`ca_key_pem`), valid from an hour before
/// `now` for [`NODE_VALIDITY`], for server and client use (peers present it to each other).
pub fn issue_node(
    cluster: &str,
    namespace: &str,
    ca_key_pem: &str,
    now: i64,
) -> Result<Issued, CertificateError> {
    let what = "node certificate";
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(issue_error(what))?;
    let issuer = Issuer::new(ca_params(cluster, namespace), ca_key);
    let mut params =
        CertificateParams::new(node_dns_names(cluster, namespace)).map_err(issue_error(what))?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{namespace}.svc", names::client_service(cluster)),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = at!(now - BACKDATE.as_secs() as i64);
    params.not_after = at!(now + NODE_VALIDITY.as_secs() as i64);
    let key = KeyPair::generate().map_err(issue_error(what))?;
    let cert = params.signed_by(&key, &issuer).map_err(issue_error(what))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The validity of the first certificate of a PEM chain.
pub fn validity(pem: &[u8]) -> Result<Validity, CertificateError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|error| CertificateError::Parse(format!("no PEM certificate: {error}")))?;
    let cert = block
        .parse_x509()
        .map_err(|error| CertificateError::Parse(format!("not an X.509 certificate: {error}")))?;
    Ok(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Whether the PEM chain `cert_pem` starts with a certificate that chains to the CA `ca_pem`,
/// is valid now and names `server_name` (rustls's own verifier, as a client would check it).
pub fn signed_by(cert_pem: &[u8], ca_pem: &[u8], server_name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("tls.crt: {error}"))?;
    let (leaf, intermediates) = chain.split_first().ok_or("tls.crt holds no certificate")?;
    let roots = crate::node_client::root_store(ca_pem)?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|error| error.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|error| error.to_string())?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_node_certificate_names_both_services_every_pod_and_localhost() {
        assert_eq!(
            node_dns_names("demo", "apps"),
            [
                "demo",
                "demo.apps",
                "demo.apps.svc",
                "demo.apps.svc.cluster.local",
                "demo-headless",
                "demo-headless.apps",
                "demo-headless.apps.svc",
                "demo-headless.apps.svc.cluster.local",
                "*.demo-headless.apps.svc",
                "*.demo-headless.apps.svc.cluster.local",
                "localhost"
            ]
        );
        assert_eq!(
            pod_server_name("demo", "apps", "demo-2"),
            "demo-2.demo-headless.apps.svc"
        );
    }

    #[test]
    fn a_node_certificate_chains_to_its_ca_for_every_pod_and_lives_90_days(
    ) -> Result<(), CertificateError> {
        let ca = issue_ca("demo", "apps", NOW)?;
        let node = issue_node("demo", "apps", &ca.key_pem, NOW)?;
        let life = validity(node.cert_pem.as_bytes())?;
        assert_eq!(
            life,
            Validity {
                not_before: NOW - 3600,
                not_after: NOW + 90 * 24 * 3600
            }
        );
        assert_eq!(
            life.renew_at(),
            NOW - 3600 + (90 * 24 * 3600 + 3600) * 2 / 3
        );
        let ca_life = validity(ca.cert_pem.as_bytes())?;
        assert_eq!(ca_life.not_after, NOW + 10 * 365 * 24 * 3600);
        // Verified now (within its life): pick a validity around the real clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let ca = issue_ca("demo", "apps", now)?;
        let node = issue_node("demo", "apps", &ca.key_pem, now)?;
        for name in [
            "demo-0.demo-headless.apps.svc",
            "demo.apps.svc.cluster.local",
            "localhost",
        ] {
            assert_eq!(
                signed_by(node.cert_pem.as_bytes(), ca.cert_pem.as_bytes(), name),
                Ok(()),
                "{name}"
            );
        }
        assert!(signed_by(
            node.cert_pem.as_bytes(),
            ca.cert_pem.as_bytes(),
            "demo-0.other-headless.apps.svc"
        )
        .is_err());
        let other = issue_ca("demo", "apps", now)?;
        assert!(signed_by(
            node.cert_pem.as_bytes(),
            other.cert_pem.as_bytes(),
            "localhost"
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            validity(b"not a certificate"),
            Err(CertificateError::Parse(_))
        ));
    }
}
