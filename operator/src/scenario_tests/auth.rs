//! The password the pods mount: a new one in the referenced Secret rolls the pods, a deleted
//! Secret rolls nothing and is reported, the pod template carries the auth Secret's revision
//! (nothing derived from the password), and a deleted generated Secret is generated again and
//! rolled out next to the previous password.

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
    /// The pod template's auth-revision annotation.
    fn auth_revision(&self) -> Option<String> {
        self.api.get(STS).unwrap_or_default()["spec"]["template"]["metadata"]["annotations"]
            ["sessionstore.dev/auth-revision"]
            .as_str()
            .map(str::to_owned)
    }

    /// `<uid>-<resourceVersion>` of the object at `path` as stored now.
    fn revision_of(&self, path: &str) -> Option<String> {
        let object = self.api.get(path)?;
        Some(format!(
            "{}-{}",
            object["metadata"]["uid"].as_str()?,
            object["metadata"]["resourceVersion"].as_str()?
        ))
    }
}

#[tokio::test]
async fn a_new_password_in_the_referenced_secret_rolls_the_pods() {
    let h = Harness::new();
    let spec = json!({"auth": {"secretRef": {"name": "web-pass"}}});
    h.api.put(PASSWORD_SECRET, password_secret("first"));
    h.reconcile(spec.clone()).await;
    let first = h.revision_of(PASSWORD_SECRET);
    assert_eq!(h.auth_revision(), first);
    assert!(first
        .as_ref()
        .is_some_and(|r| r.starts_with("uid-web-pass-")));
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
    assert_eq!(h.auth_revision(), h.revision_of(PASSWORD_SECRET));
    assert_ne!(h.auth_revision(), first);
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
    let before = h.auth_revision();
    h.run_ready(3);
    h.reconcile(spec.clone()).await;

    h.api
        .0
        .lock()
        .map(|mut s| s.objects.remove(PASSWORD_SECRET))
        .ok();
    let writes = h.reconcile(spec.clone()).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(h.auth_revision(), before);
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
async fn the_pod_template_names_the_generated_secrets_revision_and_nothing_of_the_password() {
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
        h.auth_revision(),
        h.revision_of("/api/v1/namespaces/apps/secrets/demo-auth")
    );
    let template = serde_json::to_string(&h.api.get(STS).unwrap_or_default()["spec"]["template"])
        .unwrap_or_default();
    assert!(!template.contains(&String::from_utf8_lossy(&password.0).into_owned()));
    let writes = h.reconcile(json!({"auth": {"enabled": false}})).await;
    assert!(writes.contains(&"PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo".to_owned()));
    assert_eq!(h.auth_revision(), None, "no password, no revision");
}

impl Harness {
    /// The lines of `<name>-node-auth`'s `password`: what the nodes accept.
    fn node_passwords(&self) -> Vec<String> {
        let secret = self
            .api
            .get("/api/v1/namespaces/apps/secrets/demo-node-auth")
            .unwrap_or_default();
        let bytes: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"]["password"].clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes.0)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The generated password clients read.
    fn generated_password(&self) -> String {
        let secret = self
            .api
            .get("/api/v1/namespaces/apps/secrets/demo-auth")
            .unwrap_or_default();
        let bytes: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"]["password"].clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes.0).into_owned()
    }

    /// The StatefulSet's status with its revisions, and the pods' revision labels.
    fn rollout(&self, current: &str, update: &str, pods: &str) {
        if let Some(mut sts) = self.api.get(STS) {
            sts["status"] = json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
                "currentRevision": current, "updateRevision": update});
            self.api.put(STS, sts);
        }
        for i in 0..3 {
            let path = format!("/api/v1/namespaces/apps/pods/demo-{i}");
            if let Some(mut pod) = self.api.get(&path) {
                pod["metadata"]["labels"]["controller-revision-hash"] = json!(pods);
                self.api.put(&path, pod);
            }
        }
    }
}

#[tokio::test]
async fn a_deleted_generated_secret_rolls_out_a_new_password_next_to_the_previous_one() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_ready(3);
    h.reconcile(json!({})).await;
    let first = h.generated_password();
    assert_eq!(h.node_passwords(), std::slice::from_ref(&first));

    h.api
        .0
        .lock()
        .map(|mut s| {
            s.objects
                .remove("/api/v1/namespaces/apps/secrets/demo-auth")
        })
        .ok();
    h.reconcile(json!({})).await;
    let second = h.generated_password();
    assert_ne!(second, first);
    assert_eq!(h.node_passwords(), [second.clone(), first.clone()]);
    let rolled = h.auth_revision();
    assert_eq!(
        rolled,
        h.revision_of("/api/v1/namespaces/apps/secrets/demo-auth")
    );
    assert_eq!(
        h.notes_of("PasswordChanged"),
        ["Secret demo-auth was missing and was generated again with a new password: the pods restart one at a time, and until all run with it every node accepts the new and the previous password, so clients with the previous one keep working. Switch them to the new password after the PasswordRotated event"]
    );

    // The StatefulSet rolls: until every pod runs the new template both passwords stay.
    h.rollout("r1", "r2", "r1");
    h.reconcile(json!({})).await;
    h.rollout("r1", "r2", "r2");
    h.reconcile(json!({})).await;
    assert_eq!(h.node_passwords(), [second.clone(), first.clone()]);
    assert_eq!(h.notes_of("PasswordRotated"), Vec::<String>::new());

    h.rollout("r2", "r2", "r2");
    h.reconcile(json!({})).await;
    assert_eq!(h.node_passwords(), std::slice::from_ref(&second));
    assert_eq!(
        h.notes_of("PasswordRotated"),
        ["every pod runs with the new password of Secret demo-auth; running nodes still accept the previous one until they restart, nodes that start from now on accept only the new one. Switch the clients to the new password (set spec.restartedAt to refuse the previous one at once)"]
    );
    // Dropping the previous password from the Secret rolls nothing.
    assert_eq!(h.auth_revision(), rolled);
    let writes = h.reconcile(json!({})).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    let warnings: Vec<_> = h
        .events()
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert_eq!(warnings, Vec::<(String, String)>::new());
}
