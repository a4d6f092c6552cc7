//! The operator's side of data-plane security over the mocked API server: the generated peer
//! key and operator token (kept once made, a user's value used as it is), the leave call
//! carrying the token, a TLS cluster's generated certificates, its status and its HTTPS polls,
//! and a missing TLS or user Secret reported in `Degraded`.

use serde_json::{json, Value};

use super::harness::{child_writes, Harness};

const PEER_KEY: &str = "/api/v1/namespaces/apps/secrets/demo-peer-key";
const TOKEN: &str = "/api/v1/namespaces/apps/secrets/demo-operator-token";
const TLS: &str = "/api/v1/namespaces/apps/secrets/demo-tls";
const CA: &str = "/api/v1/namespaces/apps/secrets/demo-ca";

impl Harness {
    /// The value of `key` in the Secret at `path`.
    fn secret_value(&self, path: &str, key: &str) -> Option<String> {
        let secret = self.api.get(path)?;
        let bytes: k8s_openapi::ByteString =
            serde_json::from_value(secret["data"][key].clone()).ok()?;
        String::from_utf8(bytes.0).ok()
    }
}

fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(key, value)| {
            let encoded = serde_json::to_value(k8s_openapi::ByteString(value.as_bytes().to_vec()))
                .unwrap_or_default();
            ((*key).to_owned(), encoded)
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": "apps"}, "data": data})
}

#[tokio::test]
async fn the_peer_key_and_operator_token_are_generated_once_and_a_users_value_is_kept() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    let key = h.secret_value(PEER_KEY, "key").unwrap_or_default();
    let token = h.secret_value(TOKEN, "token").unwrap_or_default();
    assert_eq!((key.len(), token.len()), (64, 64));
    assert_ne!(key, token);
    assert_eq!(
        h.api.get(PEER_KEY).unwrap_or_default()["metadata"]["ownerReferences"][0]["name"],
        "demo"
    );
    h.run_ready(3);
    h.reconcile(json!({})).await;
    assert_eq!(h.secret_value(PEER_KEY, "key"), Some(key.clone()));

    // A rotation in progress (two keys) is the user's: used as it is, never overwritten.
    h.api
        .put(PEER_KEY, secret("demo-peer-key", &[("key", "new\nold\n")]));
    let writes = h.reconcile(json!({})).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(
        h.secret_value(PEER_KEY, "key").as_deref(),
        Some("new\nold\n")
    );

    // Emptied: generated again.
    h.api.put(PEER_KEY, secret("demo-peer-key", &[("key", "")]));
    let writes = h.reconcile(json!({})).await;
    assert_eq!(
        child_writes(&writes),
        ["PATCH /api/v1/namespaces/apps/secrets/demo-peer-key"]
    );
    assert_eq!(h.secret_value(PEER_KEY, "key").map(|k| k.len()), Some(64));
}

#[tokio::test]
async fn a_scale_down_asks_the_node_to_leave_with_the_operators_token() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 3})).await;
    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    h.api.put(
        TOKEN,
        secret("demo-operator-token", &[("token", "t0ken\n")]),
    );
    h.reconcile(json!({"replicas": 2})).await;
    assert_eq!(
        h.nodes.leaves.lock().map(|l| l.clone()).unwrap_or_default(),
        ["10.0.0.3:8080"]
    );
    assert_eq!(
        h.nodes
            .leave_tokens
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default(),
        [Some("t0ken".to_owned())]
    );
}

#[tokio::test]
async fn a_tls_cluster_gets_a_ca_and_a_node_certificate_and_is_polled_over_https() {
    let h = Harness::new();
    let spec = json!({"tls": {"enabled": true}});
    let writes = h.reconcile(spec.clone()).await;
    let written = child_writes(&writes);
    for path in [CA, TLS] {
        assert!(written.contains(&format!("PATCH {path}")), "{written:?}");
    }
    let ca = h.secret_value(CA, "tls.crt").unwrap_or_default();
    assert_eq!(h.secret_value(TLS, "ca.crt"), Some(ca.clone()));
    let cert = h.secret_value(TLS, "tls.crt").unwrap_or_default();
    assert_eq!(
        crate::resources::certificate::signed_by(
            cert.as_bytes(),
            ca.as_bytes(),
            "demo-1.demo-headless.apps.svc"
        ),
        Ok(())
    );
    assert_eq!(
        h.api.get(TLS).unwrap_or_default()["type"],
        "kubernetes.io/tls"
    );
    let validity =
        crate::resources::certificate::validity(cert.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let at = |seconds: i64| {
        k8s_openapi::jiff::Timestamp::from_second(seconds)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        h.status()["tls"],
        json!({"secretName": "demo-tls", "notAfter": at(validity.not_after),
               "renewAfter": at(validity.renew_at())})
    );
    assert!(h
        .notes_of("TLSCertificateIssued")
        .iter()
        .any(|note| note.starts_with("issued the node certificate in Secret demo-tls, signed by the CA in Secret demo-ca, valid until ")));

    // Steady: nothing issued again; the nodes are polled over TLS for their pod's name.
    h.run_ready(3);
    let writes = h.reconcile(spec.clone()).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    let names = h
        .nodes
        .server_names
        .lock()
        .map(|n| n.clone())
        .unwrap_or_default();
    assert!(names.contains(&Some("demo-0.demo-headless.apps.svc".to_owned())));
    assert!(names.iter().all(Option::is_some), "{names:?}");
    assert_eq!(h.condition("Degraded").0, "False");

    // The node Secret deleted: issued again by the same CA, which clients keep trusting.
    h.api.0.lock().map(|mut s| s.objects.remove(TLS)).ok();
    let writes = h.reconcile(spec).await;
    assert_eq!(child_writes(&writes), [format!("PATCH {TLS}")]);
    assert_eq!(h.secret_value(TLS, "ca.crt"), Some(ca));
    assert_ne!(h.secret_value(TLS, "tls.crt"), Some(cert));
}

#[tokio::test]
async fn a_missing_tls_or_user_secret_is_degraded_with_what_to_do() {
    let h = Harness::new();
    h.reconcile(json!({"tls": {"enabled": true, "secretRef": {"name": "web-cert"}}}))
        .await;
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "TLSSecretMissing")
    );
    assert_eq!(message, "the TLS Secret web-cert does not exist: new pods cannot start until it does. Create it (e.g. a cert-manager Certificate with secretName web-cert), or remove tls.secretRef to let the operator issue one");
    assert_eq!(h.status()["tls"], json!({"secretName": "web-cert"}));
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "TLSSecretMissing".to_owned())));

    let h = Harness::new();
    h.reconcile(json!({"auth": {"users": [
        {"name": "reader", "secretRef": {"name": "reader-pass"}, "role": "readonly"}]}}))
        .await;
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "UserSecretMissing")
    );
    assert_eq!(message, "the password Secret reader-pass with key password of user reader does not exist: the pods mount it, so new pods cannot start until it does. Create it, or remove the user from auth.users");
    assert_eq!(
        h.api
            .get("/api/v1/namespaces/apps/configmaps/demo-users")
            .unwrap_or_default()["data"],
        json!({"reader.role": "readonly"})
    );
}

#[tokio::test]
async fn without_randomness_nothing_is_generated_and_degraded_says_so_until_it_returns() {
    let source = std::env::temp_dir().join(format!(
        "sessionstore-random-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&source);
    let h = Harness::with_config(crate::controller::ControllerConfig {
        random_source: source.clone(),
        ..crate::controller::ControllerConfig::default()
    });
    let writes = h.reconcile(json!({})).await;
    let secrets: Vec<&String> = writes.iter().filter(|w| w.contains("/secrets/")).collect();
    assert_eq!(secrets, Vec::<&String>::new());
    for path in [PEER_KEY, TOKEN, "/api/v1/namespaces/apps/secrets/demo-auth"] {
        assert_eq!(h.api.get(path), None, "{path} was written");
    }
    assert_eq!(
        h.condition("Degraded"),
        (
            "True".to_owned(),
            "RandomnessUnavailable".to_owned(),
            format!(
                "the operator could not generate the password: reading {} failed: No such file or directory (os error 2). Nothing was written and no weaker value is used; fix the operator's access to /dev/urandom (it retries on every reconcile)",
                source.display()
            )
        )
    );

    // The source is back: the next reconcile generates every key from it.
    let bytes: Vec<u8> = (0..32).collect();
    if let Err(error) = std::fs::write(&source, &bytes) {
        panic!("writing {}: {error}", source.display());
    }
    h.reconcile(json!({})).await;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(h.secret_value(PEER_KEY, "key"), Some(hex.clone()));
    assert_eq!(h.secret_value(TOKEN, "token"), Some(hex.clone()));
    assert_eq!(
        h.secret_value("/api/v1/namespaces/apps/secrets/demo-auth", "password"),
        Some(hex)
    );
    assert_ne!(h.condition("Degraded").1, "RandomnessUnavailable");
    let _ = std::fs::remove_file(&source);
}
