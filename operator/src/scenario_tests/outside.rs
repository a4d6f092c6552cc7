//! Changes made behind the operator's back are set back and named: the StatefulSet scaled or
//! edited directly, a ConfigMap value changed or a key added to it.

use serde_json::json;

use super::harness::{Harness, STS};

const CONFIG: &str = "/api/v1/namespaces/apps/configmaps/demo-config";

impl Harness {
    /// Changes the stored object at `path` as `manager` would, owning `fields`.
    fn change_as(
        &self,
        path: &str,
        manager: &str,
        fields: serde_json::Value,
        change: impl FnOnce(&mut serde_json::Value),
    ) {
        let Some(mut object) = self.api.get(path) else {
            panic!("no object at {path}");
        };
        change(&mut object);
        if let Some(entries) = object["metadata"]["managedFields"].as_array_mut() {
            entries.push(json!({"manager": manager, "operation": "Update",
                "fieldsType": "FieldsV1", "fieldsV1": fields}));
        }
        self.api.put(path, object);
    }
}

#[tokio::test]
async fn a_statefulset_scaled_behind_the_operators_back_is_set_back_and_named() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    h.change_as(
        STS,
        "kubectl",
        json!({"f:spec": {"f:replicas": {}}}),
        |sts| {
            sts["spec"]["replicas"] = json!(5);
        },
    );
    h.reconcile(json!({})).await;
    assert_eq!(h.sts_replicas(), 3);
    assert_eq!(
        h.notes_of("OutsideChangeReverted"),
        ["StatefulSet demo was changed outside the operator; set back to what SessionCluster demo asks for: spec.replicas (by kubectl). Change the SessionCluster instead (kubectl edit scl demo, or kubectl scale scl demo --replicas N)"]
    );
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "OutsideChangeReverted".to_owned())));
    // Set back once: the operator owns the field again.
    h.reconcile(json!({})).await;
    assert_eq!(h.notes_of("OutsideChangeReverted").len(), 1);
}

#[tokio::test]
async fn config_changed_or_added_outside_the_operator_is_set_back_or_removed() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    h.change_as(
        CONFIG,
        "kubectl-edit",
        json!({"f:data": {"f:STORE_NODE_CLIENT_IDLE_TIMEOUT": {}}}),
        |config| config["data"]["STORE_NODE_CLIENT_IDLE_TIMEOUT"] = json!("5"),
    );
    h.reconcile(json!({})).await;
    let data = || h.api.get(CONFIG).unwrap_or_default()["data"].clone();
    assert_eq!(data().get("STORE_NODE_CLIENT_IDLE_TIMEOUT"), None);
    assert_eq!(
        h.notes_of("ExtraConfigRemoved"),
        ["ConfigMap demo-config held keys the operator does not set: STORE_NODE_CLIENT_IDLE_TIMEOUT; removed them, as the nodes read the whole ConfigMap as their environment. Set node options through the SessionCluster spec"]
    );

    h.change_as(
        CONFIG,
        "kubectl-edit",
        json!({"f:data": {"f:STORE_NODE_WRITE_ACK": {}}}),
        |config| config["data"]["STORE_NODE_WRITE_ACK"] = json!("none"),
    );
    h.reconcile(json!({})).await;
    assert_eq!(data()["STORE_NODE_WRITE_ACK"], "one");
    assert_eq!(
        h.notes_of("OutsideChangeReverted"),
        ["ConfigMap demo-config was changed outside the operator; set back to what SessionCluster demo asks for: data.STORE_NODE_WRITE_ACK (by kubectl-edit). Change the SessionCluster instead (kubectl edit scl demo, or kubectl scale scl demo --replicas N)"]
    );
}

#[tokio::test]
async fn a_key_the_operator_stopped_setting_is_removed_without_blaming_anyone() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    assert!(h.api.get(CONFIG).unwrap_or_default()["data"]
        .get("STORE_NODE_PASSWORD_FILE")
        .is_some());
    h.reconcile(json!({"auth": {"enabled": false}})).await;
    assert_eq!(
        h.api.get(CONFIG).unwrap_or_default()["data"].get("STORE_NODE_PASSWORD_FILE"),
        None,
        "a node without auth must not look for a password file"
    );
    assert_eq!(h.notes_of("ExtraConfigRemoved"), Vec::<String>::new());
}
