//! Stuck work is named: a pod that cannot pull its image, cannot get a sandbox or was
//! OOM-killed makes `Degraded` say which pod, why and what to do, with a Warning event; a
//! rollout without progress past `spec.progressDeadlineSeconds` turns `Progressing` False.

use serde_json::{json, Value};

use super::harness::{Harness, STS};

fn waiting(reason: &str, message: &str, image: &str) -> Value {
    json!({"containerStatuses": [{"name": "store-node", "image": image, "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}}}]})
}

impl Harness {
    /// A steady cluster of three ready nodes.
    async fn steady(&self, spec: Value) {
        self.reconcile(spec.clone()).await;
        self.run_ready(3);
        self.reconcile(spec).await;
    }

    /// The StatefulSet's status with its current and update revisions.
    fn revisions(&self, current: &str, update: &str) {
        if let Some(mut sts) = self.api.get(STS) {
            sts["status"] = json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 0,
                "currentRevision": current, "updateRevision": update});
            self.api.put(STS, sts);
        }
    }
}

#[tokio::test]
async fn a_pod_that_cannot_pull_its_image_degrades_the_cluster_until_it_can() {
    let h = Harness::new();
    h.steady(json!({})).await;
    assert_eq!(h.condition("Degraded").0, "False");

    // The rollout of a bad image replaced demo-2 first; the others keep serving.
    let bad = json!({"image": "registry.invalid/store-node:nope"});
    h.pod_with(
        2,
        false,
        waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"registry.invalid/store-node:nope\"",
            "registry.invalid/store-node:nope",
        ),
    );
    h.reconcile(bad.clone()).await;
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ImagePullBackOff")
    );
    assert_eq!(
        message,
        "pod demo-2 cannot pull image registry.invalid/store-node:nope: ImagePullBackOff (Back-off pulling image \"registry.invalid/store-node:nope\"). Check spec.image and spec.imagePullPolicy, and that the node can reach the registry; the other nodes keep serving"
    );
    assert_eq!(
        h.notes_of("ImagePullBackOff"),
        [format!("Degraded is True: {message}")]
    );
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "ImagePullBackOff".to_owned())));
    let (available, _, counts) = h.condition("Available");
    assert_eq!(
        (available.as_str(), counts.as_str()),
        ("True", "2 of 3 nodes ready (quorum 2)")
    );

    // The image is set back and the pod runs again.
    h.pod(2, true);
    h.reconcile(json!({})).await;
    assert_eq!(
        h.condition("Degraded"),
        ("False".into(), "Healthy".into(), "no problem found".into())
    );
}

#[tokio::test]
async fn a_sandbox_that_cannot_be_created_is_named_from_the_pods_events() {
    let h = Harness::new();
    h.steady(json!({})).await;
    let failure = "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to start sandbox container task: cannot allocate memory";
    h.pod_with(
        0,
        false,
        json!({"conditions": [{"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "store-node", "image": "store:1", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    for (name, uid, reason) in [
        ("demo-0.1", "pod-uid-0", "FailedCreatePodSandBox"),
        ("demo-0.2", "pod-uid-0", "Scheduled"),
        ("demo-1.1", "pod-uid-1", "FailedCreatePodSandBox"),
    ] {
        h.api.put(
            &format!("/api/v1/namespaces/apps/events/{name}"),
            json!({"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": "apps"},
                "involvedObject": {"kind": "Pod", "name": "demo-0", "uid": uid},
                "reason": reason, "message": failure, "type": "Warning",
                "lastTimestamp": "2026-01-01T00:00:00Z"}),
        );
    }
    h.reconcile(json!({})).await;
    assert_eq!(
        h.condition("Degraded"),
        (
            "True".into(),
            "FailedCreatePodSandBox".into(),
            format!("pod demo-0 cannot start: FailedCreatePodSandBox: {failure}. The memory limit is too small to start a container: raise resources.limits.memory")
        )
    );
}

#[tokio::test]
async fn an_oom_kill_is_a_warning_event_naming_the_node_once_per_kill() {
    let h = Harness::new();
    h.steady(json!({"resources": {"limits": {"memory": "128Mi"}}}))
        .await;
    let killed = |restarts: i64| {
        json!({"containerStatuses": [{"name": "store-node", "image": "store:1", "imageID": "",
            "ready": true, "restartCount": restarts, "state": {"running": {}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                "finishedAt": k8s_openapi::jiff::Timestamp::now().to_string()}}}]})
    };
    h.pod_with(1, true, killed(1));
    let spec = json!({"resources": {"limits": {"memory": "128Mi"}}});
    h.reconcile(spec.clone()).await;
    h.reconcile(spec.clone()).await;
    let kills = |h: &Harness| {
        h.notes_of("OOMKilled")
            .into_iter()
            .filter(|note| note.starts_with("node demo-1 was OOM-killed at "))
            .collect::<Vec<_>>()
    };
    let first = kills(&h);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].ends_with(" (restart 1): it used more than resources.limits.memory 128Mi. Raise the limit or lower memory.highWatermark"),
        "{}",
        first[0]
    );
    let (status, reason, message) = h.condition("Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "OOMKilled"));
    assert!(
        message.starts_with("pod demo-1 was OOM-killed at "),
        "{message}"
    );

    // Killed again within minutes: the same event, counted twice (the recorder makes a series).
    h.pod_with(1, true, killed(2));
    h.reconcile(spec.clone()).await;
    assert_eq!(kills(&h).len(), 1);
    let series = h.api.0.lock().map(|state| {
        state
            .objects
            .values()
            .filter(|event| {
                event["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("node demo-1 was OOM-killed"))
            })
            .map(|event| event["series"]["count"].clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(series.ok(), Some(vec![json!(2)]));
    // Another node killed: an event of its own, naming it.
    h.pod_with(2, true, killed(1));
    h.reconcile(spec).await;
    assert_eq!(
        h.notes_of("OOMKilled")
            .iter()
            .filter(|note| note.starts_with("node demo-2 was OOM-killed at "))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_rollout_without_progress_past_the_deadline_turns_progressing_false() {
    let h = Harness::new();
    let spec = json!({"progressDeadlineSeconds": 30, "image": "store:2"});
    h.steady(json!({"progressDeadlineSeconds": 30})).await;
    // The new template exists; no pod runs it yet.
    h.revisions("r1", "r2");
    h.reconcile(spec.clone()).await;
    assert_eq!(h.condition("Progressing").1, "RollingUpdate");
    // Half a minute and more later, still no pod on the new revision.
    if let Some(mut cluster) = h.api.get(super::harness::CLUSTER) {
        cluster["status"]["lastProgressTime"] = json!("2020-01-01T00:00:00Z");
        h.api.put(super::harness::CLUSTER, cluster);
    }
    h.reconcile(spec.clone()).await;
    assert_eq!(
        h.condition("Progressing"),
        (
            "False".into(),
            "ProgressDeadlineExceeded".into(),
            "no progress for more than 30s (spec.progressDeadlineSeconds): 0 of 3 nodes updated, one at a time after the previous one is synced; Degraded names what is stuck".into()
        )
    );
    assert!(h
        .events()
        .contains(&("Warning".to_owned(), "ProgressDeadlineExceeded".to_owned())));
    // Still stuck: still exceeded.
    h.reconcile(spec.clone()).await;
    assert_eq!(h.condition("Progressing").1, "ProgressDeadlineExceeded");

    // A pod runs the new revision: progress again.
    if let Some(mut pod) = h.api.get("/api/v1/namespaces/apps/pods/demo-2") {
        pod["metadata"]["labels"]["controller-revision-hash"] = json!("r2");
        h.api.put("/api/v1/namespaces/apps/pods/demo-2", pod);
    }
    h.reconcile(spec).await;
    let (status, reason, message) = h.condition("Progressing");
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        (
            "True",
            "RollingUpdate",
            "1 of 3 nodes updated, one at a time after the previous one is synced"
        )
    );
}
