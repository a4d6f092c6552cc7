//! The ConfigMap of `STORE_NODE_*` settings, consumed by the node with `envFrom`, and its hash,
//! which goes into the pod template so that any configuration change rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sessionstore_api::constants::{HTTP_PORT, RESP_PORT};
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
    set(
        "SHUTDOWN_TIMEOUT",
        cluster.shutdown_timeout_secs.to_string(),
    );
    set("LOG_FORMAT", "json".to_owned());
    if cluster.auth.is_some() {
        set("PASSWORD_FILE", names::PASSWORD_FILE.to_owned());
    }
    ConfigMap {
        metadata: child_meta(cluster, names::config_map(&cluster.name)),
        data: Some(data),
        ..ConfigMap::default()
    }
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
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(data, expected);
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
