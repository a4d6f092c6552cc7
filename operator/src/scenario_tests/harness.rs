//! The harness of the reconcile scenarios: a [`Context`] over the mocked API server, fake nodes
//! standing in for store-node pods, and the steps a scenario repeats (reconcile a spec, run
//! pods, make a node answer, read a condition).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use kube::runtime::controller::Action;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use sessionstore_api::node_status::{MemoryReport, NodeStatus, PeerReport};
use sessionstore_api::SessionCluster;

use super::mock_api::MockApi;
use crate::controller::{reconcile, Context, ControllerConfig};
use crate::metrics::Metrics;
use crate::node_client::{NodeAddress, NodeApi, NodeError};

/// Fake store-node pods: the `/v1/status` each address answers, and the leave calls made.
#[derive(Default)]
pub(super) struct FakeNodes {
    /// `/v1/status` by `ip:port`; an address without one does not answer.
    pub(super) statuses: Mutex<HashMap<String, NodeStatus>>,
    /// Addresses asked to leave, in order.
    pub(super) leaves: Mutex<Vec<String>>,
    /// The token each leave call carried, in order.
    pub(super) leave_tokens: Mutex<Vec<Option<String>>>,
    /// The TLS server name each status call verified, in order (`None`: plain HTTP).
    pub(super) server_names: Mutex<Vec<Option<String>>>,
}

impl NodeApi for FakeNodes {
    fn status(&self, address: NodeAddress) -> BoxFuture<'static, Result<NodeStatus, NodeError>> {
        if let Ok(mut names) = self.server_names.lock() {
            names.push(address.tls.as_ref().map(|tls| tls.server_name.clone()));
        }
        let found = self
            .statuses
            .lock()
            .ok()
            .and_then(|s| s.get(&address.socket).cloned());
        Box::pin(async move {
            found.ok_or(NodeError::Unreachable {
                address: address.socket,
                message: "fake: no node".into(),
            })
        })
    }

    fn leave(
        &self,
        address: NodeAddress,
        token: Option<String>,
    ) -> BoxFuture<'static, Result<(), NodeError>> {
        if let Ok(mut leaves) = self.leaves.lock() {
            leaves.push(address.socket);
        }
        if let Ok(mut tokens) = self.leave_tokens.lock() {
            tokens.push(token);
        }
        Box::pin(async { Ok(()) })
    }
}

/// The SessionCluster every scenario reconciles.
pub(super) const CLUSTER: &str =
    "/apis/sessionstore.dev/v1alpha1/namespaces/apps/sessionclusters/demo";
/// Its StatefulSet.
pub(super) const STS: &str = "/apis/apps/v1/namespaces/apps/statefulsets/demo";

/// A controller context over the mocked API server and fake nodes.
pub(super) struct Harness {
    /// The mocked API server.
    pub(super) api: MockApi,
    /// The fake nodes.
    pub(super) nodes: Arc<FakeNodes>,
    /// What `reconcile` runs with.
    pub(super) ctx: Arc<Context>,
    /// `metadata.generation` of the SessionCluster the next reconcile stores.
    pub(super) generation: AtomicI64,
    registry: Registry,
}

impl Harness {
    /// A fresh API server, no nodes.
    pub(super) fn new() -> Self {
        Self::with_config(ControllerConfig::default())
    }

    /// [`Self::new`] with the operator's settings `config`.
    pub(super) fn with_config(config: ControllerConfig) -> Self {
        let api = MockApi::default();
        let nodes = Arc::new(FakeNodes::default());
        let mut registry = Registry::default();
        let ctx = Arc::new(Context::new(
            api.client(),
            nodes.clone(),
            config,
            Arc::new(Metrics::new(&mut registry)),
            "test",
        ));
        Self {
            api,
            nodes,
            ctx,
            generation: AtomicI64::new(1),
            registry,
        }
    }

    /// The node names in the operator's `node_memory_used_bytes` samples, sorted.
    pub(super) fn gauge_nodes(&self) -> Vec<String> {
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
    pub(super) async fn reconcile(&self, spec: Value) -> Vec<String> {
        self.reconcile_action(spec).await.0
    }

    /// [`Self::reconcile`], also returning when the controller asked to look again.
    pub(super) async fn reconcile_action(&self, spec: Value) -> (Vec<String>, Action) {
        let status = self.api.get(CLUSTER).and_then(|c| c.get("status").cloned());
        let mut object = json!({
            "apiVersion": "sessionstore.dev/v1alpha1", "kind": "SessionCluster",
            "metadata": {"name": "demo", "namespace": "apps", "uid": "uid-1",
                "generation": self.generation.load(Ordering::Relaxed)},
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

    /// `(type, reason, note)` of every event published so far.
    pub(super) fn event_notes(&self) -> Vec<(String, String, String)> {
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
                (text("type"), text("reason"), text("note"))
            })
            .collect()
    }

    /// The notes of the events with `reason`.
    pub(super) fn notes_of(&self, reason: &str) -> Vec<String> {
        self.event_notes()
            .into_iter()
            .filter(|(_, r, _)| r == reason)
            .map(|(_, _, note)| note)
            .collect()
    }

    /// The SessionCluster's stored status.
    pub(super) fn status(&self) -> Value {
        self.api.get(CLUSTER).unwrap_or_default()["status"].clone()
    }

    /// `(type, reason)` of every event published so far, oldest first.
    pub(super) fn events(&self) -> Vec<(String, String)> {
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
    pub(super) fn statefulset_status(&self, replicas: i64, ready: i64) {
        if let Some(mut sts) = self.api.get(STS) {
            sts["status"] = json!({"replicas": replicas, "readyReplicas": ready,
                "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"});
            self.api.put(STS, sts);
        }
    }

    /// `(status, reason, message)` of condition `type_`, empty when absent.
    pub(super) fn condition(&self, type_: &str) -> (String, String, String) {
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
    pub(super) fn run_pods(&self, replicas: i64) {
        if let Some(mut sts) = self.api.get(STS) {
            sts["status"] = json!({"replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"});
            self.api.put(STS, sts);
        }
        for i in 0..replicas {
            self.pod(i, true);
        }
    }

    /// Pod `ordinal`: created (and ready or not), like [`Self::run_pods`] makes them.
    pub(super) fn pod(&self, ordinal: i64, ready: bool) {
        self.pod_with(ordinal, ready, json!({}));
    }

    /// Pod `ordinal` with `status` merged over a running pod's (container statuses, conditions).
    pub(super) fn pod_with(&self, ordinal: i64, ready: bool, status: Value) {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("demo-{ordinal}"), "namespace": "apps",
                "uid": format!("pod-uid-{ordinal}"),
                "labels": {"controller-revision-hash": "r1"}},
            "status": {"podIP": format!("10.0.0.{}", ordinal + 1),
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let (Some(target), Some(extra)) = (pod["status"].as_object_mut(), status.as_object()) {
            for (key, value) in extra {
                target.insert(key.clone(), value.clone());
            }
        }
        self.api
            .put(&format!("/api/v1/namespaces/apps/pods/demo-{ordinal}"), pod);
    }

    /// Node `ordinal` of `replicas` answering `/v1/status` with every other node connected.
    pub(super) fn node(&self, ordinal: i64, replicas: i64, state: &str, alarm: bool) {
        let peers: Vec<i64> = (0..replicas).filter(|i| *i != ordinal).collect();
        self.node_seeing(ordinal, &peers, state, alarm);
    }

    /// Node `ordinal` answering `/v1/status` with `peers` connected.
    pub(super) fn node_seeing(&self, ordinal: i64, peers: &[i64], state: &str, alarm: bool) {
        self.node_as(ordinal, peers, state, alarm, |_| {});
    }

    /// Node `ordinal` answering like [`Self::node_seeing`], with `adjust` applied to its report.
    pub(super) fn node_as(
        &self,
        ordinal: i64,
        peers: &[i64],
        state: &str,
        alarm: bool,
        adjust: impl FnOnce(&mut NodeStatus),
    ) {
        let peers = peers
            .iter()
            .map(|i| PeerReport {
                name: format!("demo-{i}"),
                connected: true,
                lag_ops: 0,
                ..PeerReport::default()
            })
            .collect();
        let mut status = NodeStatus {
            node_name: format!("demo-{ordinal}"),
            state: state.into(),
            keys: 0,
            memory: MemoryReport {
                used_bytes: if alarm { 90 } else { 10 },
                limit_bytes: 100,
                alarm,
                ..MemoryReport::default()
            },
            peers,
            ..NodeStatus::default()
        };
        adjust(&mut status);
        if let Ok(mut statuses) = self.nodes.statuses.lock() {
            statuses.insert(format!("10.0.0.{}:8080", ordinal + 1), status);
        }
    }

    /// The StatefulSet's `spec.replicas`, -1 without one.
    pub(super) fn sts_replicas(&self) -> i64 {
        self.api.get(STS).unwrap_or_default()["spec"]["replicas"]
            .as_i64()
            .unwrap_or(-1)
    }

    /// The pod template's config-hash annotation.
    pub(super) fn config_hash(&self) -> String {
        self.api.get(STS).unwrap_or_default()["spec"]["template"]["metadata"]["annotations"]
            ["sessionstore.dev/config-hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// [`Self::run_pods`] with every node ready and seeing the others.
    pub(super) fn run_ready(&self, replicas: i64) {
        self.run_pods(replicas);
        for i in 0..replicas {
            self.node(i, replicas, "ready", false);
        }
    }
}

/// The writes of child objects: no events, no status.
pub(super) fn child_writes(writes: &[String]) -> Vec<String> {
    writes
        .iter()
        .filter(|w| !w.contains("/events") && !w.ends_with("/status"))
        .cloned()
        .collect()
}
