//! The password the pods mount: a new one in the referenced Secret rolls the pods, a deleted
//! Secret rolls nothing and is reported, a generated one is hashed into the pod template.

use serde_json::{json, Value};

use super::harness::{child_writes, Harness, STS};

const PASSWORD_SECRET: &str = "/api/v1/namespaces/apps/secrets/web-pass";

fn password_secret(password: &str) -> Value {
    let data = serde_json::to_value(k8s_openapi::ByteString(password.as_bytes().to_vec()))
        .unwrap_or_default();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "web-pass", "namespace": "apps"},
        "data": {"password": data}})
}

impl Harness {
    /// The pod template's auth-hash annotation.
    fn auth_hash(&self) -> Option<String> {
        self.api.get(STS).unwrap_or_default()["spec"]["template"]["metadata"]["annotations"]
            ["sessionstore.dev/auth-hash"]
            .as_str()
            .map(str::to_owned)
    }
}

#[tokio::test]
async fn a_new_password_in_the_referenced_secret_rolls_the_pods() {
    let h = Harness::new();
    let spec = json!({"auth": {"secretRef": {"name": "web-pass"}}});
    h.api.put(PASSWORD_SECRET, password_secret("first"));
    h.reconcile(spec.clone()).await;
    assert_eq!(
        h.auth_hash(),
        Some(crate::resources::auth_hash("uid-1", b"first"))
    );
    h.run_ready(3);
    h.reconcile(spec.clone()).await;
    assert_eq!(h.reconcile(spec.clone()).await, Vec::<String>::new());

    h.api.put(PASSWORD_SECRET, password_secret("second"));
    let writes = h.reconcile(spec.clone()).await;
    // The nodes' Secret gets both passwords, then the pod template changes; the StatefulSet's
    // RollingUpdate replaces one pod at a time.
    assert_eq!(
        child_writes(&writes),
        [
            "PATCH /api/v1/namespaces/apps/secrets/demo-node-auth",
            "PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo"
        ]
    );
    assert_eq!(
        h.auth_hash(),
        Some(crate::resources::auth_hash("uid-1", b"second"))
    );
    assert_eq!(
        h.api.get(STS).unwrap_or_default()["spec"]["updateStrategy"]["type"],
        "RollingUpdate"
    );
}

#[tokio::test]
async fn a_deleted_password_secret_rolls_nothing_and_is_reported() {
    let h = Harness::new();
    let spec = json!({"auth": {"secretRef": {"name": "web-pass"}}});
    h.api.put(PASSWORD_SECRET, password_secret("first"));
    h.reconcile(spec.clone()).await;
    let before = h.auth_hash();
    h.run_ready(3);
    h.reconcile(spec.clone()).await;

    h.api
        .0
        .lock()
        .map(|mut s| s.objects.remove(PASSWORD_SECRET))
        .ok();
    let writes = h.reconcile(spec.clone()).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(h.auth_hash(), before);
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "AuthSecretMissing")
    );
    assert!(message.starts_with("the password Secret web-pass with key password does not exist"));
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "AuthSecretMissing".to_owned())));

    // Put back with the same password: healthy again, still no roll.
    h.api.put(PASSWORD_SECRET, password_secret("first"));
    let writes = h.reconcile(spec).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(h.condition("Degraded").0, "False");
}

#[tokio::test]
async fn the_generated_password_is_hashed_into_the_pod_template() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    let secret = h
        .api
        .get("/api/v1/namespaces/apps/secrets/demo-auth")
        .unwrap_or_default();
    let password: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"]["password"].clone()).unwrap_or_default();
    assert_eq!(password.0.len(), 64);
    assert_eq!(
        h.auth_hash(),
        Some(crate::resources::auth_hash("uid-1", &password.0))
    );
    let writes = h.reconcile(json!({"auth": {"enabled": false}})).await;
    assert!(writes.contains(&"PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo".to_owned()));
    assert_eq!(h.auth_hash(), None, "no password, no hash");
}
