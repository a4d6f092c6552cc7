//! The ConfigMap of `STORE_NODE_*` settings, consumed by the node with `envFrom`, and its hash,
//! which goes into the pod template so that any configuration change rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sessionstore_api::constants::{HTTP_PORT, RESP_PORT, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use sessionstore_api::names;
use sha2::{Digest, Sha256};

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// The ConfigMap `<name>-config`.
pub fn build_config_map(cluster: &ValidatedCluster) -> ConfigMap {
    let mut data = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        data.insert(format!("STORE_NODE_{key}"), value);
    };
    set("RESP_PORT", RESP_PORT.to_string());
    set("HTTP_PORT", HTTP_PORT.to_string());
    set("PEER_PORT", names::peer_port().to_string());
    set("STORAGE_MODE", cluster.mode.as_str().to_owned());
    set("DATA_DIR", names::DATA_DIR.to_owned());
    set("FSYNC", cluster.fsync.as_str().to_owned());
    set("WRITE_ACK", cluster.write_ack.as_str().to_owned());
    set(
        "DEFAULT_SESSION_TIMEOUT",
        cluster.default_session_timeout_secs.to_string(),
    );
    set(
        "MAX_SESSION_TIMEOUT",
        cluster.max_session_timeout_secs.to_string(),
    );
    set(
        "EXPIRY_SWEEP_INTERVAL_MS",
        cluster.expiry_sweep_interval_ms.to_string(),
    );
    set("MAX_MEMORY", cluster.memory_limit_bytes.to_string());
    set("HIGH_WATERMARK", cluster.high_watermark.to_string());
    set("LOW_WATERMARK", cluster.low_watermark.to_string());
    set(
        "EVICTION_POLICY",
        cluster.eviction_policy.as_str().to_owned(),
    );
    // Only when asked for: a key every ConfigMap gained would roll every cluster's pods when
    // the operator is upgraded.
    if let Some(letters) = &cluster.notify_keyspace_events {
        set("NOTIFY_KEYSPACE_EVENTS", letters.clone());
    }
    set(
        "SHUTDOWN_TIMEOUT",
        cluster.shutdown_timeout_secs.to_string(),
    );
    set("LOG_FORMAT", "json".to_owned());
    if cluster.auth.is_some() {
        set("PASSWORD_FILE", names::PASSWORD_FILE.to_owned());
    }
    if !cluster.users.is_empty() {
        set("USERS_DIR", names::USERS_DIR.to_owned());
    }
    set("PEER_KEY_FILE", names::PEER_KEY_FILE.to_owned());
    set("OPERATOR_TOKEN_FILE", names::OPERATOR_TOKEN_FILE.to_owned());
    if let Some(tls) = &cluster.tls {
        // The Redis port speaks only TLS, as Redis with `port 0` and `tls-port 6379`: clients
        // keep the Service's port and switch on TLS.
        set("RESP_PORT", "0".to_owned());
        set("TLS_PORT", RESP_PORT.to_string());
        let file = |key: &str| format!("{}/{key}", names::TLS_MOUNT_DIR);
        set("TLS_CERT_FILE", file(TLS_CERT_KEY));
        set("TLS_KEY_FILE", file(TLS_KEY_KEY));
        set("TLS_CA_CERT_FILE", file(TLS_CA_KEY));
        let client_auth = if tls.client_auth { "yes" } else { "no" };
        set("TLS_AUTH_CLIENTS", client_auth.to_owned());
        set("TLS_REPLICATION", "yes".to_owned());
        set("TLS_HTTP", "yes".to_owned());
    }
    ConfigMap {
        metadata: child_meta(cluster, names::config_map(&cluster.name)),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The ConfigMap `<name>-users`: the role of each named user under `<user>.role`, projected
/// into the pods as `<users-dir>/<user>/role`; `None` without named users. A role changed
/// here reaches the nodes without a restart (they re-read the directory).
pub fn build_users_config_map(cluster: &ValidatedCluster) -> Option<ConfigMap> {
    if cluster.users.is_empty() {
        return None;
    }
    Some(ConfigMap {
        metadata: child_meta(cluster, names::users_config_map(&cluster.name)),
        data: Some(
            cluster
                .users
                .iter()
                .map(|user| (format!("{}.role", user.name), user.role.as_str().to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    })
}

/// SHA-256 (hex) of the ConfigMap data, in key order.
pub fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    #[test]
    fn default_cluster_config() {
        let config_map = build_config_map(&validated(serde_json::json!({})));
        assert_eq!(config_map.metadata.name.as_deref(), Some("demo-config"));
        let data = config_map.data.clone().unwrap_or_default();
        let expected: BTreeMap<String, String> = [
            ("STORE_NODE_RESP_PORT", "6379"),
            ("STORE_NODE_HTTP_PORT", "8080"),
            ("STORE_NODE_PEER_PORT", "7379"),
            ("STORE_NODE_STORAGE_MODE", "ram"),
            ("STORE_NODE_DATA_DIR", "/data"),
            ("STORE_NODE_FSYNC", "everysec"),
            ("STORE_NODE_WRITE_ACK", "one"),
            ("STORE_NODE_DEFAULT_SESSION_TIMEOUT", "1800"),
            ("STORE_NODE_MAX_SESSION_TIMEOUT", "86400"),
            ("STORE_NODE_EXPIRY_SWEEP_INTERVAL_MS", "100"),
            ("STORE_NODE_MAX_MEMORY", "268435456"),
            ("STORE_NODE_HIGH_WATERMARK", "0.8"),
            ("STORE_NODE_LOW_WATERMARK", "0.7"),
            ("STORE_NODE_EVICTION_POLICY", "noeviction"),
            ("STORE_NODE_SHUTDOWN_TIMEOUT", "20"),
            ("STORE_NODE_LOG_FORMAT", "json"),
            (
                "STORE_NODE_PASSWORD_FILE",
                "/etc/sessionstore/auth/password",
            ),
            ("STORE_NODE_PEER_KEY_FILE", "/etc/sessionstore/peer/key"),
            (
                "STORE_NODE_OPERATOR_TOKEN_FILE",
                "/etc/sessionstore/operator/token",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(data, expected);
    }

    /// `spec.notifyKeyspaceEvents` reaches the nodes as `STORE_NODE_NOTIFY_KEYSPACE_EVENTS`, and
    /// changing it changes the hash that rolls the pods.
    #[test]
    fn keyspace_events_reach_the_nodes_and_roll_them() {
        let build = |spec| build_config_map(&validated(spec));
        let plain = build(serde_json::json!({}));
        let egx = build(serde_json::json!({"notifyKeyspaceEvents": "Egx"}));
        let data = egx.data.clone().unwrap_or_default();
        assert_eq!(
            data.get("STORE_NODE_NOTIFY_KEYSPACE_EVENTS")
                .map(String::as_str),
            Some("Egx")
        );
        assert_eq!(
            plain
                .data
                .clone()
                .unwrap_or_default()
                .get("STORE_NODE_NOTIFY_KEYSPACE_EVENTS"),
            None
        );
        assert_ne!(config_hash(&plain), config_hash(&egx));
    }

    #[test]
    fn tls_serves_the_redis_port_over_tls_only_with_the_mounted_files() {
        let data = |spec| build_config_map(&validated(spec)).data.unwrap_or_default();
        let tls = data(serde_json::json!({"tls": {"enabled": true}}));
        let get = |key: &str| tls.get(key).map(String::as_str);
        assert_eq!(get("STORE_NODE_RESP_PORT"), Some("0"));
        assert_eq!(get("STORE_NODE_TLS_PORT"), Some("6379"));
        assert_eq!(
            get("STORE_NODE_TLS_CERT_FILE"),
            Some("/etc/sessionstore/tls/tls.crt")
        );
        assert_eq!(
            get("STORE_NODE_TLS_KEY_FILE"),
            Some("/etc/sessionstore/tls/tls.key")
        );
        assert_eq!(
            get("STORE_NODE_TLS_CA_CERT_FILE"),
            Some("/etc/sessionstore/tls/ca.crt")
        );
        assert_eq!(get("STORE_NODE_TLS_AUTH_CLIENTS"), Some("no"));
        assert_eq!(get("STORE_NODE_TLS_REPLICATION"), Some("yes"));
        assert_eq!(get("STORE_NODE_TLS_HTTP"), Some("yes"));
        let mutual = data(serde_json::json!({"tls": {"enabled": true, "clientAuth": true}}));
        assert_eq!(
            mutual
                .get("STORE_NODE_TLS_AUTH_CLIENTS")
                .map(String::as_str),
            Some("yes")
        );
        let plain = data(serde_json::json!({}));
        assert!(plain.keys().all(|key| !key.starts_with("STORE_NODE_TLS_")));
    }

    #[test]
    fn users_roles_are_keyed_by_user() {
        let none = build_users_config_map(&validated(serde_json::json!({})));
        assert_eq!(none, None);
        let users = build_users_config_map(&validated(serde_json::json!({"auth": {"users": [
            {"name": "reader", "secretRef": {"name": "r"}, "role": "readonly"},
            {"name": "app", "secretRef": {"name": "a", "key": "pw"}}
        ]}})));
        assert_eq!(
            users.as_ref().and_then(|c| c.metadata.name.as_deref()),
            Some("demo-users")
        );
        assert_eq!(
            users.and_then(|c| c.data).unwrap_or_default(),
            BTreeMap::from([
                ("app.role".to_owned(), "readwrite".to_owned()),
                ("reader.role".to_owned(), "readonly".to_owned())
            ])
        );
    }

    #[test]
    fn hash_is_stable_and_changes_with_the_config() {
        let base = build_config_map(&validated(serde_json::json!({})));
        let same = build_config_map(&validated(serde_json::json!({})));
        let changed = build_config_map(&validated(
            serde_json::json!({"replication": {"writeAck": "all"}}),
        ));
        assert_eq!(config_hash(&base), config_hash(&same));
        assert_eq!(config_hash(&base).len(), 64);
        assert_ne!(config_hash(&base), config_hash(&changed));
    }
}
