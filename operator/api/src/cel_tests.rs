//! The CEL rules of the CRD, evaluated locally with kube's CEL validator, so a rule that does
//! not parse or says the wrong thing fails here rather than on a real API server.

use kube::core::cel::{validate_cel, validate_cel_update};

use crate::rules;
use crate::types::{SessionCluster, StorageMode, WriteAck};

fn cluster(spec: serde_json::Value) -> SessionCluster {
    let object = serde_json::json!({
        "apiVersion": "sessionstore.dev/v1alpha1",
        "kind": "SessionCluster",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": spec,
    });
    match serde_json::from_value(object) {
        Ok(cluster) => cluster,
        Err(error) => panic!("test spec does not parse: {error}"),
    }
}

fn errors_of(result: Result<(), kube::core::cel::ValidationErrors>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(errors) => format!("{errors:?}"),
    }
}

#[test]
fn defaults_fill_an_empty_spec() {
    let spec = cluster(serde_json::json!({})).spec;
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.storage.mode, StorageMode::Ram);
    assert_eq!(spec.replication.write_ack, WriteAck::One);
    assert_eq!(spec.sessions.default_timeout, "30m");
    assert_eq!(spec.sessions.max_timeout, "24h");
    assert_eq!(spec.memory.high_watermark, 0.8);
    assert_eq!(spec.memory.low_watermark, 0.7);
    assert!(spec.auth.enabled);
    assert_eq!(spec.service.port, 6379);
    assert_eq!(spec.shutdown_timeout, "20s");
}

#[test]
fn a_valid_disc_cluster_passes_every_rule() {
    let c = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
    assert_eq!(errors_of(validate_cel(&c)), "");
}

#[test]
fn disc_without_size_is_refused_with_a_hint() {
    let c = cluster(serde_json::json!({"storage": {"mode": "disc"}}));
    assert!(errors_of(validate_cel(&c)).contains("storage.size is required"));
}

/// The messages of the rules `spec` breaks, and nothing else.
fn refusals(spec: serde_json::Value) -> Vec<&'static str> {
    let errors = errors_of(validate_cel(&cluster(spec)));
    let all = [
        rules::REPLICAS_MIN_MESSAGE,
        rules::REPLICAS_MAX_MESSAGE,
        rules::MEMORY_FLOOR_MESSAGE,
        rules::MEMORY_QUANTITY_MESSAGE,
        rules::HIGH_WATERMARK_MESSAGE,
        rules::LOW_WATERMARK_MESSAGE,
        rules::WATERMARK_ORDER_MESSAGE,
        rules::DEFAULT_TIMEOUT_DURATION_MESSAGE,
        rules::DEFAULT_TIMEOUT_MIN_MESSAGE,
        rules::MAX_TIMEOUT_DURATION_MESSAGE,
        rules::MAX_TIMEOUT_ORDER_MESSAGE,
        rules::CLEANUP_INTERVAL_DURATION_MESSAGE,
        rules::CLEANUP_INTERVAL_RANGE_MESSAGE,
        rules::SHUTDOWN_TIMEOUT_DURATION_MESSAGE,
        rules::SHUTDOWN_TIMEOUT_RANGE_MESSAGE,
        rules::MONITORING_INTERVAL_DURATION_MESSAGE,
        rules::PROGRESS_DEADLINE_MESSAGE,
        rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE,
        rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE,
    ];
    let found: Vec<&'static str> = all.into_iter().filter(|m| errors.contains(m)).collect();
    assert_eq!(
        errors.is_empty(),
        found.is_empty(),
        "unexpected errors: {errors}"
    );
    found
}

#[test]
fn replicas_outside_1_to_99_are_refused_with_the_bound_they_break() {
    assert_eq!(
        refusals(serde_json::json!({"replicas": 0})),
        [rules::REPLICAS_MIN_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"replicas": 1000})),
        [rules::REPLICAS_MAX_MESSAGE]
    );
    for fine in [1, 3, 99] {
        assert_eq!(refusals(serde_json::json!({"replicas": fine})), [""; 0]);
    }
}

#[test]
fn a_memory_limit_below_the_floor_is_refused() {
    let limit = |memory: &str| serde_json::json!({"resources": {"limits": {"memory": memory}}});
    for small in ["1Ki", "63Mi", "60M"] {
        assert_eq!(
            refusals(limit(small)),
            [rules::MEMORY_FLOOR_MESSAGE],
            "{small}"
        );
    }
    for fine in ["64Mi", "67108864", "0.25Gi", "1G"] {
        assert_eq!(refusals(limit(fine)), [""; 0], "{fine}");
    }
    assert_eq!(
        refusals(limit("lots")),
        [rules::MEMORY_QUANTITY_MESSAGE],
        "one message for a limit that is not a quantity"
    );
    // No limit at all is the operator's to refuse (it names the field to add).
    assert_eq!(
        refusals(serde_json::json!({"resources": {"requests": {"cpu": "1"}}})),
        [""; 0]
    );
}

#[test]
fn watermarks_must_be_ordered_and_within_0_and_0_95() {
    let memory = |high: f64, low: f64| serde_json::json!({"memory": {"highWatermark": high, "lowWatermark": low}});
    assert_eq!(refusals(memory(0.6, 0.7)), [rules::WATERMARK_ORDER_MESSAGE]);
    assert_eq!(refusals(memory(0.7, 0.7)), [rules::WATERMARK_ORDER_MESSAGE]);
    assert_eq!(refusals(memory(1.5, 0.7)), [rules::HIGH_WATERMARK_MESSAGE]);
    assert_eq!(refusals(memory(1.0, 0.7)), [rules::HIGH_WATERMARK_MESSAGE]);
    assert_eq!(
        refusals(memory(0.0, -0.1)),
        [rules::HIGH_WATERMARK_MESSAGE, rules::LOW_WATERMARK_MESSAGE]
    );
    assert_eq!(refusals(memory(0.95, 0.01)), [""; 0]);
}

#[test]
fn a_bad_duration_gets_one_message() {
    assert_eq!(
        refusals(serde_json::json!({"sessions": {"defaultTimeout": "soon"}})),
        [rules::DEFAULT_TIMEOUT_DURATION_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"sessions": {"maxTimeout": "1 day"}})),
        [rules::MAX_TIMEOUT_DURATION_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"sessions": {"cleanupInterval": "-1s"}})),
        [rules::CLEANUP_INTERVAL_DURATION_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"shutdownTimeout": "20"})),
        [rules::SHUTDOWN_TIMEOUT_DURATION_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"monitoring": {"interval": "often"}})),
        [rules::MONITORING_INTERVAL_DURATION_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"shutdownTimeout": "11m"})),
        [rules::SHUTDOWN_TIMEOUT_RANGE_MESSAGE]
    );
    assert_eq!(
        refusals(
            serde_json::json!({"sessions": {"defaultTimeout": "1.5h", "maxTimeout": "2h", "cleanupInterval": "250ms"}, "shutdownTimeout": "1m30s"})
        ),
        [""; 0]
    );
}

#[test]
fn the_progress_deadline_is_at_least_ten_seconds() {
    assert_eq!(
        cluster(serde_json::json!({}))
            .spec
            .progress_deadline_seconds,
        600
    );
    assert_eq!(
        refusals(serde_json::json!({"progressDeadlineSeconds": 5})),
        [rules::PROGRESS_DEADLINE_MESSAGE]
    );
    assert_eq!(
        refusals(serde_json::json!({"progressDeadlineSeconds": 10})),
        [""; 0]
    );
}

#[test]
fn kubectl_explain_states_the_range_and_default_of_replicas() -> anyhow::Result<()> {
    let crd = serde_json::to_value(<SessionCluster as kube::CustomResourceExt>::crd())?;
    let replicas = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["replicas"];
    assert!(replicas["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Number of store-node pods, from 1 to 99; default 3.")));
    assert_eq!(replicas["default"], 3);
    Ok(())
}

#[test]
fn max_timeout_must_cover_default_timeout() {
    let c = cluster(serde_json::json!({"sessions": {"defaultTimeout": "2h", "maxTimeout": "90m"}}));
    assert!(errors_of(validate_cel(&c)).contains("maxTimeout must be at least"));
    let ok =
        cluster(serde_json::json!({"sessions": {"defaultTimeout": "90m", "maxTimeout": "2h"}}));
    assert_eq!(errors_of(validate_cel(&ok)), "");
}

#[test]
fn storage_mode_is_immutable() {
    let old = cluster(serde_json::json!({"storage": {"mode": "ram"}}));
    let new = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
    assert!(errors_of(validate_cel_update(&new, &old)).contains("storage.mode is immutable"));
}

#[test]
fn tls_cannot_be_switched_on_or_off_on_a_running_cluster() {
    let old = cluster(serde_json::json!({"tls": {"enabled": false}}));
    let new = cluster(serde_json::json!({"tls": {"enabled": true}}));
    assert_eq!(
        errors_of(validate_cel_update(&new, &old)),
        errors_of(validate_cel_update(&old, &new))
    );
    assert!(errors_of(validate_cel_update(&new, &old))
        .contains("tls.enabled cannot change on a running cluster: nodes with and without TLS cannot replicate to each other while the pods roll"));
    let client_auth = cluster(serde_json::json!({"tls": {"enabled": true, "clientAuth": true}}));
    assert_eq!(errors_of(validate_cel_update(&client_auth, &new)), "");
}

#[test]
fn volumes_grow_but_never_shrink() {
    let old = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "2Gi"}}));
    let grown = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "3Gi"}}));
    let shrunk = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "1500Mi"}}));
    assert_eq!(errors_of(validate_cel_update(&grown, &old)), "");
    assert!(errors_of(validate_cel_update(&shrunk, &old)).contains("may grow but not shrink"));
}

#[test]
fn storage_size_is_a_quantity_string() -> anyhow::Result<()> {
    let bad = cluster(serde_json::json!({"storage": {"mode": "disc", "size": "lots"}}));
    assert!(errors_of(validate_cel(&bad))
        .contains("storage.size must be a Kubernetes quantity such as 1Gi, 500Mi or 10G"));
    let crd = serde_json::to_value(<SessionCluster as kube::CustomResourceExt>::crd())?;
    let size = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["storage"]["properties"]["size"];
    // `kubectl explain` prints the `type`; without one it says `<Object>`.
    assert_eq!(size["type"], "string");
    assert_eq!(size.get("x-kubernetes-int-or-string"), None);
    assert!(size["description"]
        .as_str()
        .is_some_and(|d| d.contains("e.g. `1Gi`, `500Mi` or `10G`")));
    Ok(())
}

#[test]
fn storage_class_is_immutable() {
    let old = cluster(
        serde_json::json!({"storage": {"mode": "disc", "size": "1Gi", "storageClassName": "a"}}),
    );
    let new = cluster(
        serde_json::json!({"storage": {"mode": "disc", "size": "1Gi", "storageClassName": "b"}}),
    );
    assert!(errors_of(validate_cel_update(&new, &old)).contains("storageClassName is immutable"));
}

#[test]
fn the_memory_limit_is_a_bounded_string_so_its_rule_fits_the_api_servers_budget(
) -> anyhow::Result<()> {
    let crd = serde_json::to_value(<SessionCluster as kube::CustomResourceExt>::crd())?;
    let resources = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["resources"];
    let memory = &resources["properties"]["limits"]["properties"]["memory"];
    assert_eq!(
        (&memory["type"], &memory["maxLength"]),
        (&"string".into(), &64.into())
    );
    assert_eq!(
        resources["properties"]["requests"]["additionalProperties"]["x-kubernetes-int-or-string"],
        true
    );
    let rules: Vec<&str> = resources["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["rule"].as_str())
        .collect();
    assert_eq!(
        rules,
        [rules::MEMORY_QUANTITY_RULE, rules::MEMORY_FLOOR_RULE]
    );
    Ok(())
}

#[test]
fn keyspace_events_take_redis_letters_with_a_channel() {
    let events = |letters: &str| refusals(serde_json::json!({"notifyKeyspaceEvents": letters}));
    for good in ["", "Egx", "KEA", "KEA$n", "Kh", "AKEtmdn"] {
        assert_eq!(events(good), Vec::<&str>::new(), "{good}");
    }
    assert_eq!(events("Egq"), [rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE]);
    assert_eq!(events("E g"), [rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE]);
    assert_eq!(
        events("gx"),
        [rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE]
    );
    assert_eq!(
        events("gq"),
        [
            rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE,
            rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE
        ]
    );
}
