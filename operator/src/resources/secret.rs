//! The password Secrets: the generated one clients read (`<name>-auth`), created once and then
//! kept (the operator never regenerates a password that clients may already use), and the one
//! the nodes mount (`<name>-node-auth`): the passwords they accept, one per line.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use sessionstore_api::constants::PASSWORD_KEY;
use sessionstore_api::names;
use sha2::{Digest, Sha256};

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// The pod template's `sessionstore.dev/auth-hash`: SHA-256 (hex) of the current password the
/// pods mount, so a new password rolls them one at a time. Salted with the SessionCluster's uid so equal
/// passwords of two clusters do not show as equal hashes.
pub fn auth_hash(cluster_uid: &str, password: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cluster_uid.as_bytes());
    hasher.update(b"\n");
    hasher.update(password);
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

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
/// its `password` key, which store-node's `--password-file` reads.
pub fn build_node_auth_secret(cluster: &ValidatedCluster, passwords: &[&str]) -> Secret {
    Secret {
        metadata: child_meta(cluster, names::node_auth_secret(&cluster.name)),
        type_: Some("Opaque".to_owned()),
        // `data`, not `stringData`: the API server turns the latter into the former, so a
        // Secret applied with `stringData` would never read back as equal and be rewritten
        // on every reconcile.
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            ByteString(passwords.join("\n").into_bytes()),
        )])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_hash_changes_with_the_password_and_the_cluster() {
        let hash = auth_hash("uid-1", b"s3cret");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, auth_hash("uid-1", b"s3cret"));
        assert_ne!(hash, auth_hash("uid-1", b"s3cret2"));
        assert_ne!(hash, auth_hash("uid-2", b"s3cret"));
        assert!(!hash.contains("s3cret"));
    }

    #[test]
    fn the_node_secret_holds_the_accepted_passwords_one_per_line() {
        let cluster = crate::resources::test_support::validated(serde_json::json!({}));
        let secret = build_node_auth_secret(&cluster, &["new", "old"]);
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-node-auth"));
        assert_eq!(
            secret.data.and_then(|d| d.get("password").cloned()),
            Some(ByteString(b"new\nold".to_vec()))
        );
    }
}
