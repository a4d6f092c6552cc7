//! Facts about the store-node Pods that the operator and the e2e suite both read the same way.

use k8s_openapi::api::core::v1::Pod;

/// True when the pod's `Ready` condition is `True`: its readiness probe passes, so the node is
/// synced with its peers and the Services route to it.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(conditions: serde_json::Value) -> Pod {
        match serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0"},
            "status": {"conditions": conditions},
        })) {
            Ok(pod) => pod,
            Err(error) => panic!("bad test pod: {error}"),
        }
    }

    #[test]
    fn only_a_true_ready_condition_is_ready() {
        assert!(pod_is_ready(&pod(serde_json::json!([
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"}
        ]))));
        assert!(!pod_is_ready(&pod(serde_json::json!([
            {"type": "Ready", "status": "False"},
            {"type": "ContainersReady", "status": "True"}
        ]))));
        assert!(!pod_is_ready(&pod(serde_json::json!([]))));
        assert!(!pod_is_ready(&Pod::default()));
    }
}
