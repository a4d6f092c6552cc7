//! The password Secrets: the generated one clients read (`<name>-auth`), created once and then
//! kept (the operator never regenerates a password that clients may already use), and the one
//! the nodes mount (`<name>-node-auth`): the passwords they accept, one per line, and the
//! revision of the auth Secret they were read at.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use sessionstore_api::constants::{PASSWORD_KEY, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use sessionstore_api::names;

use super::certificate::Issued;
use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// Key of `<name>-node-auth` holding the auth Secret's revision the current password was read
/// at (the pod template's `sessionstore.dev/auth-revision`).
pub const REVISION_KEY: &str = "revision";

/// The Secret `<name>-auth` holding `password`.
pub fn build_auth_secret(cluster: &ValidatedCluster, password: &str) -> Secret {
    Secret {
        metadata: child_meta(cluster, names::auth_secret(&cluster.name)),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            password.to_owned(),
        )])),
        ..Secret::default()
    }
}

/// The Secret `<name>-node-auth` the pods mount: `passwords` (current first) as the lines of
/// its `password` key, which store-node's `--password-file` reads, and `revision` (see
/// [`REVISION_KEY`]; the nodes mount only `password`).
pub fn build_node_auth_secret(
    cluster: &ValidatedCluster,
    passwords: &[&str],
    revision: &str,
) -> Secret {
    Secret {
        metadata: child_meta(cluster, names::node_auth_secret(&cluster.name)),
        type_: Some("Opaque".to_owned()),
        // `data`, not `stringData`: the API server turns the latter into the former, so a
        // Secret applied with `stringData` would never read back as equal and be rewritten
        // on every reconcile.
        data: Some(BTreeMap::from([
            (
                PASSWORD_KEY.to_owned(),
                ByteString(passwords.join("\n").into_bytes()),
            ),
            (
                REVISION_KEY.to_owned(),
                ByteString(revision.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// A Secret the operator generates once and the nodes mount, holding `value` under `key`: the
/// peer key (`<name>-peer-key`) or the operator token (`<name>-operator-token`).
pub fn build_key_secret(cluster: &ValidatedCluster, name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: child_meta(cluster, name.to_owned()),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// Which generated TLS Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSecretKind {
    /// `<name>-ca`: the CA's certificate and key.
    Ca,
    /// `<name>-tls`: the node certificate, its key and the CA's certificate.
    Node,
}

/// The data of a TLS Secret in cert-manager's layout: `tls.crt`, `tls.key` and, when given,
/// `ca.crt`.
pub fn tls_data(issued: &Issued, ca_pem: Option<&str>) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::from([
        (
            TLS_CERT_KEY.to_owned(),
            ByteString(issued.cert_pem.clone().into_bytes()),
        ),
        (
            TLS_KEY_KEY.to_owned(),
            ByteString(issued.key_pem.clone().into_bytes()),
        ),
    ]);
    if let Some(ca) = ca_pem {
        data.insert(TLS_CA_KEY.to_owned(), ByteString(ca.as_bytes().to_vec()));
    }
    data
}

/// A generated TLS Secret (`kubernetes.io/tls`): the CA (`<name>-ca`) or the node certificate
/// with `ca_pem` as its `ca.crt` (`<name>-tls`).
pub fn build_tls_secret(
    cluster: &ValidatedCluster,
    kind: TlsSecretKind,
    issued: &Issued,
    ca_pem: Option<&str>,
) -> Secret {
    let name = match kind {
        TlsSecretKind::Ca => names::tls_ca_secret(&cluster.name),
        TlsSecretKind::Node => names::tls_secret(&cluster.name),
    };
    Secret {
        metadata: child_meta(cluster, name),
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(tls_data(issued, ca_pem)),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_secret_holds_the_accepted_passwords_one_per_line() {
        let cluster = crate::resources::test_support::validated(serde_json::json!({}));
        let secret = build_node_auth_secret(&cluster, &["new", "old"], "u-1-7");
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-node-auth"));
        assert_eq!(
            secret
                .data
                .as_ref()
                .and_then(|d| d.get("password").cloned()),
            Some(ByteString(b"new\nold".to_vec()))
        );
        assert_eq!(
            secret
                .data
                .as_ref()
                .and_then(|d| d.get("revision").cloned()),
            Some(ByteString(b"u-1-7".to_vec()))
        );
    }
}
