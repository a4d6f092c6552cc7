//! The contract of docs/contract.md pinned from the operator's side: the StatefulSet and
//! ConfigMap the operator renders are parsed with store-node's own `Config`, so an env name or a
//! value the node does not accept fails here.

use std::collections::BTreeMap;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use store_node::config::Config;

use sessionstore_api::names;

use crate::resources::test_support::validated;
use crate::resources::{build_config_map, build_statefulset, config_hash, StatefulSetInputs};

/// The environment the kubelet would give pod `demo-0`: the ConfigMap's keys through `envFrom`,
/// then the container's `env` (which wins), downward-API fields stubbed.
fn pod_environment(statefulset: &StatefulSet, config_map: &ConfigMap) -> BTreeMap<String, String> {
    let container = statefulset
        .spec
        .clone()
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].clone())
        .unwrap_or_default();
    let mut env = BTreeMap::new();
    for source in container.env_from.unwrap_or_default() {
        let reference = source.config_map_ref.map(|r| r.name);
        assert_eq!(
            reference, config_map.metadata.name,
            "envFrom names the ConfigMap"
        );
        env.extend(config_map.data.clone().unwrap_or_default());
    }
    for var in container.env.unwrap_or_default() {
        let value = match (var.value, var.value_from.and_then(|v| v.field_ref)) {
            (Some(value), _) => value,
            (None, Some(field)) => match field.field_path.as_str() {
                "metadata.name" => "demo-0".to_owned(),
                "metadata.namespace" => "apps".to_owned(),
                "status.podIP" => "10.0.0.7".to_owned(),
                other => panic!("unexpected downward API field {other}"),
            },
            (None, None) => panic!("env {} has no value", var.name),
        };
        env.insert(var.name, value);
    }
    env
}

/// Turns the environment into store-node flags, failing on any variable the node has no flag
/// for, then parses them (plus the container args) with store-node's `Config`.
fn parse_as_store_node(statefulset: &StatefulSet, config_map: &ConfigMap) -> Config {
    let command = Config::command();
    let by_env: BTreeMap<String, String> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, arg.get_long()?.to_owned()))
        })
        .collect();
    let mut argv = vec!["store-node".to_owned()];
    for (name, value) in pod_environment(statefulset, config_map) {
        let Some(long) = by_env.get(&name) else {
            panic!("store-node has no option read from env {name}");
        };
        argv.push(format!("--{long}={value}"));
    }
    let container_args = statefulset
        .spec
        .clone()
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers[0].args.clone())
        .unwrap_or_default();
    argv.extend(container_args);
    match Config::try_parse_from(&argv) {
        Ok(config) => config,
        Err(error) => panic!("store-node refuses {argv:?}: {error}"),
    }
}

fn render(spec: serde_json::Value) -> (StatefulSet, ConfigMap) {
    let cluster = validated(spec);
    let config_map = build_config_map(&cluster);
    let statefulset = build_statefulset(
        &cluster,
        &StatefulSetInputs {
            replicas: cluster.replicas,
            config_hash: config_hash(&config_map),
            auth_revision: None,
            claim_size: None,
        },
    );
    (statefulset, config_map)
}

#[test]
fn the_rendered_pod_configures_store_node_as_the_spec_says() {
    let (statefulset, config_map) = render(serde_json::json!({
        "replication": {"writeAck": "all"},
        "sessions": {"defaultTimeout": "15m", "maxTimeout": "2h", "cleanupInterval": "250ms"},
        "memory": {"highWatermark": 0.9, "lowWatermark": 0.75, "evictionPolicy": "volatile-lru"},
        "resources": {"limits": {"memory": "512Mi"}},
        "shutdownTimeout": "30s",
        "notifyKeyspaceEvents": "Egx"
    }));
    let config = parse_as_store_node(&statefulset, &config_map);
    assert_eq!(
        config.cluster_service_name.as_deref(),
        Some(names::headless_service("demo").as_str())
    );
    assert_eq!(i32::from(config.peer_port), names::peer_port());
    assert_eq!(config.resp_port, 6379);
    assert_eq!(config.http_port, 8080);
    assert_eq!(config.node_name.as_deref(), Some("demo-0"));
    assert_eq!(config.namespace.as_deref(), Some("apps"));
    assert_eq!(config.advertise_address.as_deref(), Some("10.0.0.7"));
    assert_eq!(config.write_ack, store_node::config::WriteAck::All);
    assert_eq!(config.default_session_timeout, 900);
    assert_eq!(config.max_session_timeout, 7200);
    assert_eq!(config.expiry_sweep_interval_ms, 250);
    assert_eq!(config.max_memory, 512 * 1024 * 1024);
    assert_eq!(config.high_watermark, 0.9);
    assert_eq!(config.low_watermark, 0.75);
    assert_eq!(
        config.eviction_policy,
        store_node::config::EvictionPolicy::VolatileLru
    );
    assert_eq!(config.shutdown_timeout, 30);
    assert_eq!(
        config.notify_keyspace_events.to_string(),
        "gxE",
        "Egx as Redis's CONFIG GET shows it"
    );
    assert_eq!(
        config.password_file.as_deref(),
        Some(std::path::Path::new(names::PASSWORD_FILE))
    );
    if let Err(error) = config.validate() {
        panic!("store-node's own validation refuses the rendered config: {error}");
    }
    let grace = statefulset
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or_default();
    assert!(
        grace > config.shutdown_timeout as i64,
        "grace {grace} must exceed the node's bound"
    );
}

#[test]
fn disc_mode_settings_parse() {
    let (statefulset, config_map) = render(serde_json::json!({
        "storage": {"mode": "disc", "size": "1Gi", "fsync": "always"}
    }));
    let config = parse_as_store_node(&statefulset, &config_map);
    assert_eq!(config.storage_mode, store_node::config::StorageMode::Disc);
    assert_eq!(config.fsync, store_node::config::Fsync::Always);
    assert_eq!(config.data_dir, std::path::PathBuf::from(names::DATA_DIR));
}

/// The file a mounted volume puts at `path`: `(volume source name, key)` — a Secret's or a
/// ConfigMap's, through a plain or a projected volume.
fn mounted_file(statefulset: &StatefulSet, path: &std::path::Path) -> Option<(String, String)> {
    let pod = statefulset.spec.clone()?.template.spec?;
    let container = &pod.containers[0];
    let volumes = pod.volumes.unwrap_or_default();
    container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find_map(|mount| {
            let relative = path
                .strip_prefix(&mount.mount_path)
                .ok()?
                .to_str()?
                .to_owned();
            let volume = volumes.iter().find(|v| v.name == mount.name)?;
            let from_items =
                |name: Option<String>,
                 items: Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>| {
                    items
                        .unwrap_or_default()
                        .into_iter()
                        .find(|item| item.path == relative)
                        .map(|item| (name.clone().unwrap_or_default(), item.key))
                };
            if let Some(secret) = &volume.secret {
                return from_items(secret.secret_name.clone(), secret.items.clone());
            }
            volume
                .projected
                .as_ref()?
                .sources
                .clone()?
                .into_iter()
                .find_map(|source| {
                    if let Some(secret) = source.secret {
                        from_items(Some(secret.name), secret.items)
                    } else if let Some(config_map) = source.config_map {
                        from_items(Some(config_map.name), config_map.items)
                    } else {
                        None
                    }
                })
        })
}

#[test]
fn every_security_file_the_node_reads_is_mounted_from_its_secret() {
    let (statefulset, config_map) = render(serde_json::json!({
        "tls": {"enabled": true, "clientAuth": true},
        "auth": {"users": [{"name": "reader", "secretRef": {"name": "reader-pass", "key": "pw"}, "role": "readonly"}]}
    }));
    let config = parse_as_store_node(&statefulset, &config_map);
    if let Err(error) = config.validate() {
        panic!("store-node's own validation refuses the rendered config: {error}");
    }
    assert_eq!((config.resp_port, config.tls_port), (0, 6379));
    assert!(config.tls_replication && config.tls_http);
    assert_eq!(config.tls_auth_clients, store_node::config::ClientAuth::Yes);
    let file =
        |path: Option<&std::path::Path>| path.and_then(|path| mounted_file(&statefulset, path));
    let pair = |name: &str, key: &str| Some((name.to_owned(), key.to_owned()));
    assert_eq!(
        file(config.tls_cert_file.as_deref()),
        pair("demo-tls", "tls.crt")
    );
    assert_eq!(
        file(config.tls_key_file.as_deref()),
        pair("demo-tls", "tls.key")
    );
    assert_eq!(
        file(config.tls_ca_cert_file.as_deref()),
        pair("demo-tls", "ca.crt")
    );
    assert_eq!(
        file(config.peer_key_file.as_deref()),
        pair("demo-peer-key", "key")
    );
    assert_eq!(
        file(config.operator_token_file.as_deref()),
        pair("demo-operator-token", "token")
    );
    assert_eq!(
        file(config.password_file.as_deref()),
        pair("demo-node-auth", "password")
    );
    let users = config.users_dir.clone().unwrap_or_default();
    assert_eq!(
        file(Some(&users.join("reader/password"))),
        pair("reader-pass", "pw")
    );
    assert_eq!(
        file(Some(&users.join("reader/role"))),
        pair("demo-users", "reader.role")
    );
}
