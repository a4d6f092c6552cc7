//! Writes test certificates into a directory, for the redis-py/redis-cli TLS tests and the TLS
//! benchmark (no private key is committed to the repository): `ca.crt`; `node.crt` and
//! `node.key` (for `localhost` and 127.0.0.1, serial 1, server and client use); `node2.crt`
//! and `node2.key` (serial 2, the same names: a replacement); `client.crt` and `client.key`;
//! and `intruder.crt` and `intruder.key`, signed by another CA.
//!
//! `cargo run -p store-node --example test_certs -- <dir>`

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

fn ca(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    Ok((pem, Issuer::new(params, key)))
}

fn issue(
    issuer: &Issuer<'static, KeyPair>,
    params: CertificateParams,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

fn node(serial: u8) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "store-node");
    params.serial_number = Some(SerialNumber::from(vec![serial]));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

fn client(name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: test_certs <directory>"))?,
    );
    std::fs::create_dir_all(&dir)?;
    let (ca_pem, issuer) = ca("sessionstore test CA")?;
    let (_, other) = ca("another cluster's CA")?;
    std::fs::write(dir.join("ca.crt"), ca_pem)?;
    for (name, issuer, params) in [
        ("node", &issuer, node(1)?),
        ("node2", &issuer, node(2)?),
        ("client", &issuer, client("test client")?),
        ("intruder", &other, client("intruder")?),
    ] {
        let (cert, key) = issue(issuer, params)?;
        std::fs::write(dir.join(format!("{name}.crt")), cert)?;
        std::fs::write(dir.join(format!("{name}.key")), key)?;
    }
    println!("{}", dir.display());
    Ok(())
}
