//! Watches the pods of a SessionCluster and records, after every pod event, how many of the
//! desired pods are not serving (missing, not Ready, or terminating): a rolling restart must
//! never have more than one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use sessionstore_api::names;
use sessionstore_api::pods::pod_is_ready;
use tokio::task::JoinHandle;

/// What the watch saw.
#[derive(Debug, Default, Clone)]
pub struct AvailabilityReport {
    /// Largest number of desired pods not serving at once.
    pub max_unavailable: usize,
    /// Pod events seen.
    pub events: u64,
    /// `(seconds since start, unavailable pods)` at every change of the unavailable set.
    pub timeline: Vec<(f64, Vec<String>)>,
}

/// A running watch; [`AvailabilityWatch::stop`] returns the report.
pub struct AvailabilityWatch {
    report: Arc<Mutex<AvailabilityReport>>,
    task: JoinHandle<()>,
}

impl AvailabilityWatch {
    /// Watches the pods of `cluster`, whose desired pods are those of ordinals `0..replicas`.
    pub fn start(client: &Client, namespace: &str, cluster: &str, replicas: i32) -> Self {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let desired: Vec<String> = (0..replicas).map(|i| names::pod(cluster, i)).collect();
        let report = Arc::new(Mutex::new(AvailabilityReport::default()));
        let shared = report.clone();
        let config = watcher::Config::default().labels(&names::selector_string(cluster));
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
            let mut last: Option<Vec<String>> = None;
            // During a (re)list the map is incomplete: judge only once the list is done.
            let mut listing = false;
            let mut stream = watcher(api, config).boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                        pods.insert(pod.name_any(), pod);
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        pods.remove(&pod.name_any());
                    }
                    Ok(watcher::Event::Init) => {
                        listing = true;
                        pods.clear();
                    }
                    Ok(watcher::Event::InitDone) => listing = false,
                    Err(_) => continue,
                }
                if listing {
                    continue;
                }
                let unavailable: Vec<String> = desired
                    .iter()
                    .filter(|name| {
                        !pods.get(*name).is_some_and(|pod| {
                            pod_is_ready(pod) && pod.metadata.deletion_timestamp.is_none()
                        })
                    })
                    .cloned()
                    .collect();
                if let Ok(mut report) = shared.lock() {
                    report.events += 1;
                    report.max_unavailable = report.max_unavailable.max(unavailable.len());
                    if last.as_ref() != Some(&unavailable) {
                        report
                            .timeline
                            .push((started.elapsed().as_secs_f64(), unavailable.clone()));
                        last = Some(unavailable);
                    }
                }
            }
        });
        Self { report, task }
    }

    /// Stops watching and returns what was seen.
    pub fn stop(self) -> AvailabilityReport {
        self.task.abort();
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
