//! The Secrets and ConfigMaps a store-node pod mounts: the accepted passwords
//! (`<name>-node-auth`), the peer key, the operator token, the TLS Secret, and the named users
//! (each user's own Secret and `<name>-users`, projected into one directory). Each file lands
//! where the ConfigMap's `STORE_NODE_*_FILE` settings point (`contract_tests` checks that).

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, KeyToPath, ProjectedVolumeSource, SecretProjection, SecretVolumeSource,
    Volume, VolumeMount, VolumeProjection,
};
use sessionstore_api::constants::{
    OPERATOR_TOKEN_KEY, PEER_KEY_KEY, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY,
};
use sessionstore_api::names;

use crate::validate::ValidatedCluster;

/// The mounts and volumes of the pod's secrets, in a fixed order.
pub(super) fn secret_volumes(cluster: &ValidatedCluster) -> (Vec<VolumeMount>, Vec<Volume>) {
    let mut volume_mounts = Vec::new();
    let mut volumes = Vec::new();
    if cluster.auth.is_some() {
        volume_mounts.push(VolumeMount {
            name: "auth".to_owned(),
            mount_path: names::AUTH_MOUNT_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "auth".to_owned(),
            // The operator's copy, not the auth Secret itself: it also holds the previous
            // password while a new one rolls out, and it survives the auth Secret's deletion.
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::node_auth_secret(&cluster.name)),
                items: Some(vec![KeyToPath {
                    key: sessionstore_api::constants::PASSWORD_KEY.to_owned(),
                    path: sessionstore_api::constants::PASSWORD_KEY.to_owned(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }

    let mut mount_secret = |volume: &str, path: &str, secret: String, items: &[(&str, &str)]| {
        volume_mounts.push(VolumeMount {
            name: volume.to_owned(),
            mount_path: path.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(
                    items
                        .iter()
                        .map(|(key, path)| key_to_path(key, path))
                        .collect(),
                ),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    };
    mount_secret(
        "peer-key",
        names::PEER_KEY_MOUNT_DIR,
        names::peer_key_secret(&cluster.name),
        &[(PEER_KEY_KEY, "key")],
    );
    mount_secret(
        "operator-token",
        names::OPERATOR_TOKEN_MOUNT_DIR,
        names::operator_token_secret(&cluster.name),
        &[(OPERATOR_TOKEN_KEY, "token")],
    );
    if let Some(tls) = &cluster.tls {
        mount_secret(
            "tls",
            names::TLS_MOUNT_DIR,
            tls.secret.clone(),
            &[
                (TLS_CERT_KEY, TLS_CERT_KEY),
                (TLS_KEY_KEY, TLS_KEY_KEY),
                (TLS_CA_KEY, TLS_CA_KEY),
            ],
        );
    }
    if !cluster.users.is_empty() {
        volume_mounts.push(VolumeMount {
            name: "users".to_owned(),
            mount_path: names::USERS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(users_volume(cluster));
    }
    (volume_mounts, volumes)
}

fn key_to_path(key: &str, path: &str) -> KeyToPath {
    KeyToPath {
        key: key.to_owned(),
        path: path.to_owned(),
        ..KeyToPath::default()
    }
}

/// The named users as store-node's `--users-dir` reads them: `<user>/password` straight from
/// each user's own Secret (no copy; a new password there reaches the nodes without a restart)
/// and `<user>/role` from `<name>-users`.
fn users_volume(cluster: &ValidatedCluster) -> Volume {
    let mut sources: Vec<VolumeProjection> = cluster
        .users
        .iter()
        .map(|user| VolumeProjection {
            secret: Some(SecretProjection {
                name: user.secret_ref.name.clone(),
                items: Some(vec![key_to_path(
                    &user.secret_ref.key,
                    &format!("{}/password", user.name),
                )]),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        })
        .collect();
    sources.push(VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: names::users_config_map(&cluster.name),
            items: Some(
                cluster
                    .users
                    .iter()
                    .map(|user| {
                        key_to_path(
                            &format!("{}.role", user.name),
                            &format!("{}/role", user.name),
                        )
                    })
                    .collect(),
            ),
            optional: Some(false),
        }),
        ..VolumeProjection::default()
    });
    Volume {
        name: "users".to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o440),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    #[test]
    fn named_users_are_projected_from_their_own_secrets() {
        let (_, volumes) = secret_volumes(&validated(serde_json::json!({"auth": {"users": [
            {"name": "reader", "secretRef": {"name": "reader-pass"}, "role": "readonly"}
        ]}})));
        let users = volumes
            .into_iter()
            .find(|v| v.name == "users")
            .and_then(|v| v.projected)
            .and_then(|p| p.sources)
            .unwrap_or_default();
        let secret = users[0].secret.clone().unwrap_or_default();
        assert_eq!(secret.name, "reader-pass");
        assert_eq!(
            secret.items,
            Some(vec![key_to_path("password", "reader/password")])
        );
        let roles = users[1].config_map.clone().unwrap_or_default();
        assert_eq!(roles.name, "demo-users");
        assert_eq!(
            roles.items,
            Some(vec![key_to_path("reader.role", "reader/role")])
        );
    }
}
