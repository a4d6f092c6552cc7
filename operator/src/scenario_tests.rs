//! Reconcile scenarios against a mocked API server: an in-memory object store behind a tower
//! service that answers GET/LIST/PATCH/POST/DELETE like the API server does, and records every
//! write, plus a fake [`NodeApi`] standing in for store-node pods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::Client;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use sessionstore_api::SessionCluster;

use crate::controller::{
    cluster_of_pod, clusters_using_secret, handle_outcome, reconcile, Context, ControllerConfig,
};
use crate::metrics::Metrics;
use crate::node_client::{NodeApi, NodeError, NodeMemory, NodePeer, NodeStatus};

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// What the API server does to the quantities these tests use: it stores them in canonical
/// form, so the object read back differs in spelling from the object applied.
fn canonicalise_quantities(value: &mut Value) {
    match value {
        Value::String(text) => match text.as_str() {
            "1000m" => *text = "1".to_owned(),
            "0.5Gi" => *text = "512Mi".to_owned(),
            _ => {}
        },
        Value::Object(map) => map.values_mut().for_each(canonicalise_quantities),
        Value::Array(items) => items.iter_mut().for_each(canonicalise_quantities),
        _ => {}
    }
}

/// What the API server does to a Secret's `stringData`: it is stored base64-encoded in `data`.
fn store_string_data(object: &mut Value) {
    let Some(Value::Object(strings)) = object.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    for (key, value) in strings {
        let bytes = k8s_openapi::ByteString(value.as_str().unwrap_or_default().as_bytes().to_vec());
        object["data"][key] = serde_json::to_value(bytes).unwrap_or_default();
    }
}

#[derive(Default)]
struct ApiState {
    objects: BTreeMap<String, Value>,
    writes: Vec<String>,
    /// Paths whose PATCH the API server refuses, with the status code and message.
    refusals: HashMap<String, (u16, String)>,
}

#[derive(Clone, Default)]
struct MockApi(Arc<Mutex<ApiState>>);

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

impl MockApi {
    fn handle(&self, method: &Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let Ok(mut state) = self.0.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, json!({}));
        };
        if *method != Method::GET {
            state.writes.push(format!("{method} {path}"));
        }
        match *method {
            Method::GET => {
                if let Some(object) = state.objects.get(path) {
                    return (StatusCode::OK, object.clone());
                }
                let prefix = format!("{path}/");
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(key, _)| {
                        key.strip_prefix(&prefix)
                            .is_some_and(|rest| !rest.contains('/'))
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                let is_list = segments
                    .iter()
                    .position(|s| *s == "namespaces")
                    .is_some_and(|i| segments.len() == i + 3);
                if is_list {
                    (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                    )
                } else {
                    not_found()
                }
            }
            Method::PATCH => {
                if let Some((code, message)) = state.refusals.get(path) {
                    let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::FORBIDDEN);
                    return (
                        status,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": message, "reason": "Forbidden",
                               "code": code}),
                    );
                }
                let body = body.unwrap_or_default();
                if let Some(object_path) = path.strip_suffix("/status") {
                    let Some(object) = state.objects.get_mut(object_path) else {
                        return not_found();
                    };
                    // A JSON merge patch (RFC 7386), like the API server: fields the patch
                    // does not mention are kept, `null` removes.
                    merge_patch(&mut object["status"], &body["status"]);
                    return (StatusCode::OK, object.clone());
                }
                let mut stored = body;
                canonicalise_quantities(&mut stored);
                if let Some(previous) = state.objects.get(path) {
                    if let Some(status) = previous.get("status") {
                        stored["status"] = status.clone();
                    }
                    if stored.get("data").is_none() {
                        if let Some(data) = previous.get("data") {
                            stored["data"] = data.clone();
                        }
                    }
                }
                state.objects.insert(path.to_owned(), stored.clone());
                (StatusCode::OK, stored)
            }
            Method::POST => {
                let mut body = body.unwrap_or_default();
                store_string_data(&mut body);
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or("event")
                    .to_owned();
                state.objects.insert(format!("{path}/{name}"), body.clone());
                (StatusCode::CREATED, body)
            }
            Method::DELETE => match state.objects.remove(path) {
                Some(object) => (StatusCode::OK, object),
                None => not_found(),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }

    fn client(&self) -> Client {
        let mock = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let mock = mock.clone();
            async move {
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let bytes = request.into_body().collect().await?.to_bytes();
                let body = serde_json::from_slice::<Value>(&bytes).ok();
                let (status, value) = mock.handle(&method, &path, body);
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()));
                response.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            }
        });
        Client::new(service, "apps")
    }

    fn take_writes(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut s| std::mem::take(&mut s.writes))
            .unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().ok()?.objects.get(path).cloned()
    }

    fn put(&self, path: &str, value: Value) {
        if let Ok(mut state) = self.0.lock() {
            state.objects.insert(path.to_owned(), value);
        }
    }
}

#[derive(Default)]
struct FakeNodes {
    statuses: Mutex<HashMap<String, NodeStatus>>,
    leaves: Mutex<Vec<String>>,
}

impl NodeApi for FakeNodes {
    fn status(&self, address: String) -> BoxFuture<'static, Result<NodeStatus, NodeError>> {
        let found = self
            .statuses
            .lock()
            .ok()
            .and_then(|s| s.get(&address).cloned());
        Box::pin(async move {
            found.ok_or(NodeError::Unreachable {
                address,
                message: "fake: no node".into(),
            })
        })
    }

    fn leave(
        &self,
        address: String,
        _password: Option<String>,
    ) -> BoxFuture<'static, Result<(), NodeError>> {
        if let Ok(mut leaves) = self.leaves.lock() {
            leaves.push(address);
        }
        Box::pin(async { Ok(()) })
    }
}

const CLUSTER: &str = "/apis/sessionstore.dev/v1alpha1/namespaces/apps/sessionclusters/demo";
const STS: &str = "/apis/apps/v1/namespaces/apps/statefulsets/demo";

struct Harness {
    api: MockApi,
    nodes: Arc<FakeNodes>,
    ctx: Arc<Context>,
    registry: Registry,
}

impl Harness {
    fn new() -> Self {
        let api = MockApi::default();
        let nodes = Arc::new(FakeNodes::default());
        let mut registry = Registry::default();
        let ctx = Arc::new(Context::new(
            api.client(),
            nodes.clone(),
            ControllerConfig::default(),
            Arc::new(Metrics::new(&mut registry)),
            "test",
        ));
        Self {
            api,
            nodes,
            ctx,
            registry,
        }
    }

    /// The node names in the operator's `node_memory_used_bytes` samples, sorted.
    fn gauge_nodes(&self) -> Vec<String> {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            panic!("encoding failed: {error}");
        }
        let mut nodes: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("sessionstore_operator_node_memory_used_bytes{"))
            .filter_map(|l| {
                l.split("node=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            })
            .collect();
        nodes.sort();
        nodes
    }

    /// Stores the SessionCluster with `spec` (keeping its status) and reconciles it.
    async fn reconcile(&self, spec: Value) -> Vec<String> {
        self.reconcile_action(spec).await.0
    }

    /// [`Self::reconcile`], also returning when the controller asked to look again.
    async fn reconcile_action(&self, spec: Value) -> (Vec<String>, Action) {
        let status = self.api.get(CLUSTER).and_then(|c| c.get("status").cloned());
        let mut object = json!({
            "apiVersion": "sessionstore.dev/v1alpha1", "kind": "SessionCluster",
            "metadata": {"name": "demo", "namespace": "apps", "uid": "uid-1", "generation": 1},
            "spec": spec,
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        self.api.put(CLUSTER, object.clone());
        let cluster: SessionCluster = match serde_json::from_value(object) {
            Ok(c) => c,
            Err(e) => panic!("bad test object: {e}"),
        };
        self.api.take_writes();
        match reconcile(Arc::new(cluster), self.ctx.clone()).await {
            Ok(action) => (self.api.take_writes(), action),
            Err(error) => panic!("reconcile failed: {error}"),
        }
    }

    /// `(type, reason)` of every event published so far, oldest first.
    fn events(&self) -> Vec<(String, String)> {
        let prefix = "/apis/events.k8s.io/v1/namespaces/apps/events/";
        let Ok(state) = self.api.0.lock() else {
            return Vec::new();
        };
        state
            .objects
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, event)| {
                let text = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
                (text("type"), text("reason"))
            })
            .collect()
    }

    /// Sets the StatefulSet's observed counts.
    fn statefulset_status(&self, replicas: i64, ready: i64) {
        if let Some(mut sts) = self.api.get(STS) {
            sts["status"] = json!({"replicas": replicas, "readyReplicas": ready,
                "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"});
            self.api.put(STS, sts);
        }
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let status = self.api.get(CLUSTER).unwrap_or_default()["status"].clone();
        let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
        let found = conditions
            .into_iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_default();
        let text = |k: &str| found[k].as_str().unwrap_or_default().to_owned();
        (text("status"), text("reason"), text("message"))
    }

    /// Makes the StatefulSet look rolled out and adds ready pods with IPs 10.0.0.<ordinal+1>.
    fn run_pods(&self, replicas: i64) {
        if let Some(mut sts) = self.api.get(STS) {
            sts["status"] = json!({"replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"});
            self.api.put(STS, sts);
        }
        for i in 0..replicas {
            self.api.put(
                &format!("/api/v1/namespaces/apps/pods/demo-{i}"),
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("demo-{i}"), "namespace": "apps"},
                    "status": {"podIP": format!("10.0.0.{}", i + 1),
                        "conditions": [{"type": "Ready", "status": "True"}]}}),
            );
        }
    }

    fn node(&self, ordinal: i64, replicas: i64, state: &str, alarm: bool) {
        let peers: Vec<i64> = (0..replicas).filter(|i| *i != ordinal).collect();
        self.node_seeing(ordinal, &peers, state, alarm);
    }

    /// Node `ordinal` answering `/v1/status` with `peers` connected.
    fn node_seeing(&self, ordinal: i64, peers: &[i64], state: &str, alarm: bool) {
        let peers = peers
            .iter()
            .map(|i| NodePeer {
                name: format!("demo-{i}"),
                connected: true,
                lag_ops: 0,
            })
            .collect();
        if let Ok(mut statuses) = self.nodes.statuses.lock() {
            statuses.insert(
                format!("10.0.0.{}:8080", ordinal + 1),
                NodeStatus {
                    node_name: format!("demo-{ordinal}"),
                    state: state.into(),
                    keys: 0,
                    memory: NodeMemory {
                        used_bytes: if alarm { 90 } else { 10 },
                        limit_bytes: 100,
                        alarm,
                    },
                    peers,
                },
            );
        }
    }

    fn sts_replicas(&self) -> i64 {
        self.api.get(STS).unwrap_or_default()["spec"]["replicas"]
            .as_i64()
            .unwrap_or(-1)
    }

    fn config_hash(&self) -> String {
        self.api.get(STS).unwrap_or_default()["spec"]["template"]["metadata"]["annotations"]
            ["sessionstore.dev/config-hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn child_writes(writes: &[String]) -> Vec<String> {
    writes
        .iter()
        .filter(|w| !w.contains("/events") && !w.ends_with("/status"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn create_applies_every_child_then_a_steady_rereconcile_writes_nothing() {
    let h = Harness::new();
    let writes = h.reconcile(json!({})).await;
    let expected = [
        "PATCH /api/v1/namespaces/apps/serviceaccounts/demo-node",
        "PATCH /api/v1/namespaces/apps/configmaps/demo-config",
        "POST /api/v1/namespaces/apps/secrets",
        "PATCH /api/v1/namespaces/apps/services/demo-headless",
        "PATCH /api/v1/namespaces/apps/services/demo",
        "PATCH /apis/policy/v1/namespaces/apps/poddisruptionbudgets/demo",
        "PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo",
    ];
    assert_eq!(child_writes(&writes), expected);
    assert!(writes.contains(&format!("PATCH {CLUSTER}/status")));
    assert_eq!(h.sts_replicas(), 3);
    assert_eq!(h.condition("Progressing").0, "True");

    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    let writes = h.reconcile(json!({})).await;
    assert!(child_writes(&writes).is_empty(), "{writes:?}");
    assert_eq!(h.condition("Available").0, "True");
    assert_eq!(h.condition("Clustered").0, "True");

    let writes = h.reconcile(json!({})).await;
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "a steady cluster costs no writes"
    );
}

#[tokio::test]
async fn quantities_the_api_server_canonicalises_cause_no_rewrite() {
    let h = Harness::new();
    let spec = json!({"replicas": 1, "resources": {
        "requests": {"cpu": "1000m", "memory": "0.5Gi"},
        "limits": {"cpu": "1000m", "memory": "0.5Gi"}}});
    h.reconcile(spec.clone()).await;
    let stored = h.api.get(STS).unwrap_or_default();
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"], "1",
        "the mock canonicalises like the API server"
    );
    h.run_pods(1);
    h.node(0, 1, "ready", false);
    h.reconcile(spec.clone()).await;
    let writes = h.reconcile(spec).await;
    assert_eq!(writes, Vec::<String>::new(), "1000m and 1 are the same CPU");
}

#[tokio::test]
async fn scale_up_raises_the_statefulset() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 3})).await;
    h.run_pods(3);
    let writes = h.reconcile(json!({"replicas": 5})).await;
    assert_eq!(
        child_writes(&writes),
        ["PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo"]
    );
    assert_eq!(h.sts_replicas(), 5);
    assert_eq!(h.condition("Progressing").1, "ScalingUp");
}

#[tokio::test]
async fn scale_down_asks_leaving_nodes_first() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 3, "auth": {"enabled": false}}))
        .await;
    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    h.reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    assert_eq!(
        h.nodes.leaves.lock().map(|l| l.clone()).unwrap_or_default(),
        vec!["10.0.0.3:8080".to_owned()]
    );
    assert_eq!(h.sts_replicas(), 3, "replicas stay until the node left");
    assert_eq!(h.condition("Progressing").1, "ScalingDown");

    assert_eq!(
        h.api.get(CLUSTER).unwrap_or_default()["status"]["scaleDown"]["leaving"],
        json!(["demo-2"])
    );

    h.node(2, 3, "left", false);
    h.reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    assert_eq!(h.sts_replicas(), 2);
    // The status is a merge patch: the finished scale-down must be removed with an explicit
    // null, or it stays forever and every later reconcile writes the status again.
    assert_eq!(
        h.api.get(CLUSTER).unwrap_or_default()["status"].get("scaleDown"),
        None
    );
    h.run_pods(2);
    h.node(0, 2, "ready", false);
    h.node(1, 2, "ready", false);
    h.reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    let writes = h
        .reconcile(json!({"replicas": 2, "auth": {"enabled": false}}))
        .await;
    assert_eq!(writes, Vec::<String>::new(), "steady after the scale-down");
}

#[tokio::test]
async fn config_change_rolls_the_pods() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    let before = h.config_hash();
    let writes = h
        .reconcile(json!({"replication": {"writeAck": "all"}}))
        .await;
    assert!(writes.contains(&"PATCH /api/v1/namespaces/apps/configmaps/demo-config".to_owned()));
    assert_ne!(h.config_hash(), before);
    assert_eq!(h.config_hash().len(), 64);
}

#[tokio::test]
async fn paused_changes_nothing_but_the_condition() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    let writes = h.reconcile(json!({"paused": true, "replicas": 7})).await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    assert_eq!(h.sts_replicas(), 3);
    assert_eq!(h.condition("Paused").0, "True");
}

#[tokio::test]
async fn invalid_spec_is_reported_without_touching_children() {
    let h = Harness::new();
    let writes = h
        .reconcile(json!({"sessions": {"defaultTimeout": "2h", "maxTimeout": "1h"}}))
        .await;
    assert_eq!(child_writes(&writes), Vec::<String>::new());
    let (status, reason, message) = h.condition("ReconcileSuccess");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("raise maxTimeout"));
    assert!(
        writes.iter().any(|w| w.contains("/events")),
        "a Warning event: {writes:?}"
    );
}

#[tokio::test]
async fn memory_pressure_comes_from_members() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_pods(3);
    h.node(0, 3, "ready", false);
    h.node(1, 3, "ready", true);
    h.node(2, 3, "ready", false);
    let writes = h.reconcile(json!({})).await;
    let (status, _, message) = h.condition("MemoryPressure");
    assert_eq!(status, "True");
    assert!(
        message.starts_with("demo-1 at 90% of its memory limit"),
        "{message}"
    );
    assert!(writes.iter().any(|w| w.contains("/events")));
    let cluster = h.api.get(CLUSTER).unwrap_or_default();
    assert_eq!(cluster["status"]["memory"], "90%");
}

#[tokio::test]
async fn unsynced_members_are_polled_again_soon_with_a_bounded_backoff() {
    let h = Harness::new();
    h.reconcile(json!({})).await;
    h.run_pods(3);
    // demo-0 restarted and is ready; demo-1 and demo-2 have not reconnected to it yet.
    h.node_seeing(0, &[1, 2], "ready", false);
    h.node_seeing(1, &[2], "ready", false);
    h.node_seeing(2, &[1], "ready", false);
    let mut delays = Vec::new();
    for _ in 0..7 {
        let (writes, action) = h.reconcile_action(json!({})).await;
        assert!(child_writes(&writes).is_empty(), "{writes:?}");
        delays.push(action);
    }
    let seconds = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(
        delays,
        [1, 2, 4, 8, 16, 30, 30].map(seconds),
        "1 s doubling while unsynced, bounded at 30 s"
    );
    assert_eq!(h.condition("Clustered").1, "PeersMissing");

    // The peers reconnected: Clustered comes back and the cluster is polled slowly again.
    h.node(1, 3, "ready", false);
    h.node(2, 3, "ready", false);
    let (writes, action) = h.reconcile_action(json!({})).await;
    assert_eq!(h.condition("Clustered").0, "True");
    assert_eq!(
        writes,
        [
            format!("PATCH {CLUSTER}/status"),
            "POST /apis/events.k8s.io/v1/namespaces/apps/events".to_owned()
        ]
    );
    assert_eq!(
        h.events().last(),
        Some(&("Normal".to_owned(), "AllPeersConnected".to_owned()))
    );
    assert_eq!(action, seconds(60));
    let (writes, action) = h.reconcile_action(json!({})).await;
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "a steady cluster costs no writes"
    );
    assert_eq!(action, seconds(60));

    // The next restart starts the backoff from 1 s again.
    h.node_seeing(1, &[2], "ready", false);
    assert_eq!(h.reconcile_action(json!({})).await.1, seconds(1));
}

#[tokio::test]
async fn a_node_still_loading_keeps_the_fast_polls() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 1})).await;
    h.run_pods(1);
    h.node(0, 1, "loading", false);
    let (_, action) = h.reconcile_action(json!({"replicas": 1})).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
}

#[tokio::test]
async fn pods_of_the_statefulset_map_back_to_their_cluster() {
    let h = Harness::new();
    h.reconcile(json!({"podLabels": {"team": "web"}})).await;
    let template_labels =
        h.api.get(STS).unwrap_or_default()["spec"]["template"]["metadata"]["labels"].clone();
    let pod = |labels: Value| -> Pod {
        match serde_json::from_value(json!({"metadata": {
            "name": "demo-0", "namespace": "apps", "labels": labels}}))
        {
            Ok(pod) => pod,
            Err(error) => panic!("bad test pod: {error}"),
        }
    };
    assert_eq!(
        cluster_of_pod(&pod(template_labels.clone())),
        Some(ObjectRef::new("demo").within("apps"))
    );
    // A store-node pod some other tool manages is not ours.
    let mut foreign = template_labels.clone();
    foreign["app.kubernetes.io/managed-by"] = json!("helm");
    assert_eq!(cluster_of_pod(&pod(foreign)), None);
    let mut unnamed = template_labels;
    if let Some(labels) = unnamed.as_object_mut() {
        labels.remove("app.kubernetes.io/instance");
    }
    assert_eq!(cluster_of_pod(&pod(unnamed)), None);
    assert_eq!(
        crate::naming::pod_watch_selector(),
        "app.kubernetes.io/name=store-node,app.kubernetes.io/managed-by=sessionstore-operator"
    );
}

#[tokio::test]
async fn a_scale_up_warns_of_no_quorum_loss_until_a_ready_node_is_lost() {
    let h = Harness::new();
    h.reconcile(json!({"replicas": 1})).await;
    h.run_pods(1);
    h.node(0, 1, "ready", false);
    h.reconcile(json!({"replicas": 1})).await;
    assert_eq!(h.condition("Available").0, "True");

    h.reconcile(json!({"replicas": 3})).await;
    // The new pods exist and are starting.
    h.statefulset_status(3, 1);
    h.reconcile(json!({"replicas": 3})).await;
    h.reconcile(json!({"replicas": 3})).await;
    let (status, reason, _) = h.condition("Available");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "ScalingUp"));
    let warnings: Vec<_> = h
        .events()
        .into_iter()
        .filter(|(t, _)| t == "Warning")
        .collect();
    assert_eq!(warnings, Vec::<(String, String)>::new());

    // demo-0 goes away while the new pods are still starting: quorum is really lost.
    h.statefulset_status(3, 0);
    h.reconcile(json!({"replicas": 3})).await;
    assert_eq!(h.condition("Available").1, "QuorumLost");
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "QuorumLost".to_owned())));
}

#[tokio::test]
async fn node_gauges_go_with_a_scale_down_and_with_the_cluster() {
    let h = Harness::new();
    let spec = |replicas: i64| json!({"replicas": replicas, "auth": {"enabled": false}});
    h.reconcile(spec(3)).await;
    h.run_pods(3);
    for i in 0..3 {
        h.node(i, 3, "ready", false);
    }
    h.reconcile(spec(3)).await;
    assert_eq!(h.gauge_nodes(), ["demo-0", "demo-1", "demo-2"]);

    // 3 -> 2: demo-2 leaves, then the StatefulSet is lowered.
    h.reconcile(spec(2)).await;
    assert_eq!(
        h.gauge_nodes(),
        ["demo-0", "demo-1", "demo-2"],
        "still a member while leaving"
    );
    h.node(2, 3, "left", false);
    h.reconcile(spec(2)).await;
    assert_eq!(h.sts_replicas(), 2);
    assert_eq!(h.gauge_nodes(), ["demo-0", "demo-1"]);

    // A node that does not answer once keeps its gauges.
    if let Ok(mut statuses) = h.nodes.statuses.lock() {
        statuses.remove("10.0.0.2:8080");
    }
    h.reconcile(spec(2)).await;
    assert_eq!(h.gauge_nodes(), ["demo-0", "demo-1"]);

    // Deleted: the controller's next look at it finds no object.
    let gone = ObjectRef::<SessionCluster>::new("demo")
        .within("apps")
        .erase();
    handle_outcome(
        &h.ctx,
        Err(kube::runtime::controller::Error::ObjectNotFound(Box::new(
            gone,
        ))),
    );
    assert_eq!(h.gauge_nodes(), Vec::<String>::new());
}

const PASSWORD_SECRET: &str = "/api/v1/namespaces/apps/secrets/web-pass";

fn password_secret(password: &str) -> Value {
    let data = serde_json::to_value(k8s_openapi::ByteString(password.as_bytes().to_vec()))
        .unwrap_or_default();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "web-pass", "namespace": "apps"},
        "data": {"password": data}})
}

impl Harness {
    /// [`Self::run_pods`] with every node ready and seeing the others.
    fn run_ready(&self, replicas: i64) {
        self.run_pods(replicas);
        for i in 0..replicas {
            self.node(i, replicas, "ready", false);
        }
    }

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
    // Only the pod template changes; the StatefulSet's RollingUpdate replaces one pod at a time.
    assert_eq!(
        child_writes(&writes),
        ["PATCH /apis/apps/v1/namespaces/apps/statefulsets/demo"]
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

#[test]
fn secrets_map_to_the_clusters_that_mount_them() {
    let cluster = |name: &str, namespace: &str, auth: Value| -> Arc<SessionCluster> {
        match serde_json::from_value(json!({
            "apiVersion": "sessionstore.dev/v1alpha1", "kind": "SessionCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"auth": auth}}))
        {
            Ok(c) => Arc::new(c),
            Err(e) => panic!("bad test object: {e}"),
        }
    };
    let clusters = [
        cluster(
            "web",
            "apps",
            json!({"secretRef": {"name": "shared", "key": "pw"}}),
        ),
        cluster("api", "apps", json!({"secretRef": {"name": "shared"}})),
        cluster("other", "staging", json!({"secretRef": {"name": "shared"}})),
        cluster("gen", "apps", json!({})),
        cluster(
            "open",
            "apps",
            json!({"enabled": false, "secretRef": {"name": "shared"}}),
        ),
    ];
    let secret = |name: &str| -> Secret {
        match serde_json::from_value(json!({"metadata": {"name": name, "namespace": "apps"}})) {
            Ok(s) => s,
            Err(e) => panic!("bad test secret: {e}"),
        }
    };
    let names = |secret_name: &str| -> Vec<String> {
        clusters_using_secret(&clusters, &secret(secret_name))
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    };
    assert_eq!(names("shared"), ["apps/web", "apps/api"]);
    assert_eq!(names("gen-auth"), ["apps/gen"]);
    assert_eq!(names("unrelated"), Vec::<String>::new());
}

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
    assert_eq!(h.condition("ReconcileSuccess").0, "True");
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

#[tokio::test]
async fn monitoring_objects_follow_the_crds_and_the_spec() {
    let h = Harness::new();
    let on = json!({"monitoring": {"enabled": true, "interval": "15s"}});
    let monitoring_writes = |writes: Vec<String>| -> Vec<String> {
        writes
            .into_iter()
            .filter(|w| w.contains("monitoring.coreos.com"))
            .collect()
    };
    let unavailable = |h: &Harness| {
        h.events()
            .iter()
            .filter(|(t, r)| t == "Warning" && r == "MonitoringUnavailable")
            .count()
    };

    // Without the Prometheus Operator's CRDs: one Warning naming both, once.
    assert_eq!(
        monitoring_writes(h.reconcile(on.clone()).await),
        Vec::<String>::new()
    );
    h.reconcile(on.clone()).await;
    assert_eq!(unavailable(&h), 1);
    assert_eq!(h.condition("ReconcileSuccess").0, "True");

    for crd in ["servicemonitors", "prometheusrules"] {
        h.api.put(
            &format!(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.monitoring.coreos.com"
            ),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{crd}.monitoring.coreos.com")}}),
        );
    }
    let service_monitor = "/apis/monitoring.coreos.com/v1/namespaces/apps/servicemonitors/demo";
    let prometheus_rule = "/apis/monitoring.coreos.com/v1/namespaces/apps/prometheusrules/demo";
    assert_eq!(
        monitoring_writes(h.reconcile(on.clone()).await),
        [
            format!("PATCH {service_monitor}"),
            format!("PATCH {prometheus_rule}")
        ]
    );
    assert_eq!(
        h.api.get(service_monitor).unwrap_or_default()["spec"]["endpoints"][0]["interval"],
        "15s"
    );
    assert_eq!(
        monitoring_writes(h.reconcile(on).await),
        Vec::<String>::new()
    );

    // Disabled: what it made is deleted, once.
    let off = json!({"monitoring": {"enabled": false}});
    assert_eq!(
        monitoring_writes(h.reconcile(off.clone()).await),
        [
            format!("DELETE {service_monitor}"),
            format!("DELETE {prometheus_rule}")
        ]
    );
    assert_eq!(h.api.get(service_monitor), None);
    assert_eq!(
        monitoring_writes(h.reconcile(off).await),
        Vec::<String>::new()
    );
    assert_eq!(unavailable(&h), 1);
}
