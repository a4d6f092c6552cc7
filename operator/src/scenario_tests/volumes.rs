//! Disc volumes: a larger size expands every claim once; a refused expansion is explained in
//! `Degraded`, not retried as a failure, and picked up once allowed.

use serde_json::json;

use super::harness::{child_writes, Harness};

fn claim_path(ordinal: i64) -> String {
    format!("/api/v1/namespaces/apps/persistentvolumeclaims/data-demo-{ordinal}")
}

impl Harness {
    /// A running disc cluster of 3 nodes whose claims were made from a 1Gi template.
    async fn disc_cluster_with_claims(&self) {
        let spec = json!({"storage": {"mode": "disc", "size": "1Gi"}});
        self.reconcile(spec.clone()).await;
        for i in 0..3 {
            self.api.put(
                &claim_path(i),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": format!("data-demo-{i}"), "namespace": "apps"},
                    "spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
            );
        }
        self.run_ready(3);
        self.reconcile(spec).await;
    }

    fn claim_request(&self, ordinal: i64) -> String {
        self.api.get(&claim_path(ordinal)).unwrap_or_default()["spec"]["resources"]["requests"]
            ["storage"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test]
async fn a_larger_storage_size_expands_every_claim_once() {
    let h = Harness::new();
    h.disc_cluster_with_claims().await;
    let grown = json!({"storage": {"mode": "disc", "size": "2Gi"}});
    let writes = h.reconcile(grown.clone()).await;
    assert_eq!(
        child_writes(&writes),
        (0..3)
            .map(|i| format!("PATCH {}", claim_path(i)))
            .collect::<Vec<_>>(),
        "the claims, not the StatefulSet's immutable template"
    );
    assert_eq!(
        (0..3).map(|i| h.claim_request(i)).collect::<Vec<_>>(),
        ["2Gi", "2Gi", "2Gi"]
    );
    assert!(h
        .events()
        .contains(&("Normal".to_owned(), "VolumesExpanded".to_owned())));
    assert_eq!(h.condition("Degraded").0, "False");
    assert_eq!(h.reconcile(grown).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_expansion_is_explained_not_retried_as_a_failure() {
    let h = Harness::new();
    h.disc_cluster_with_claims().await;
    let message = "persistentvolumeclaims \"data-demo-0\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize";
    if let Ok(mut state) = h.api.0.lock() {
        state
            .refusals
            .insert(claim_path(0), (403, message.to_owned()));
    }
    let grown = json!({"storage": {"mode": "disc", "size": "2Gi"}});
    // `reconcile` panics on an error: a refusal is not one.
    h.reconcile(grown.clone()).await;
    let (status, reason, text) = h.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ChangeRefused")
    );
    assert_eq!(
        text,
        format!("storage.size cannot grow to 2Gi: the API server refused to expand claim data-demo-0: {message}. The volumes keep their size until the StorageClass allows expansion (allowVolumeExpansion: true)")
    );
    let (status, reason, text) = h.condition("ReconcileSuccess");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ChangeRefused"),
        "part of the spec is refused: {text}"
    );
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "ChangeRefused".to_owned())));
    assert_eq!(h.claim_request(0), "1Gi");

    // Looked at again: the same refused patch, no status write.
    let writes = h.reconcile(grown.clone()).await;
    assert_eq!(writes, [format!("PATCH {}", claim_path(0))]);

    // The administrator allows expansion: the claims grow and Degraded clears.
    if let Ok(mut state) = h.api.0.lock() {
        state.refusals.clear();
    }
    h.reconcile(grown).await;
    assert_eq!(h.claim_request(2), "2Gi");
    assert_eq!(h.condition("Degraded").0, "False");
}
