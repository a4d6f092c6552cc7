//! The generated password Secret, created once and then kept: the operator never regenerates a
//! password that clients may already use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sessionstore_api::constants::PASSWORD_KEY;
use sessionstore_api::names;
use sha2::{Digest, Sha256};

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// The pod template's `sessionstore.dev/auth-hash`: SHA-256 (hex) of the password the pods mount,
/// so a new password rolls them one at a time. Salted with the SessionCluster's uid so equal
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
}
