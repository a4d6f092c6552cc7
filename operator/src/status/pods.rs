//! What the status needs of the cluster's pods, read from the pods themselves rather than from
//! the StatefulSet's counters (which lag behind: its `readyReplicas` still counted three pods
//! seconds after all were deleted): how many exist, are ready, run the current revision, and
//! which are stuck (an image that cannot be pulled, a crash loop, an OOM kill, no node to run
//! on, a sandbox that cannot be created) with what to do about it.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sessionstore_api::constants::{reason, LABEL_CONTROLLER_REVISION};
use sessionstore_api::names;
use sessionstore_api::pods::pod_is_ready;

/// How long after an OOM kill `Degraded` still names it: long enough to be seen, short enough
/// that a node which has run fine since is not reported for ever.
pub const OOM_REPORT_SECONDS: i64 = 600;

/// A container's last termination, as the kubelet reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Termination {
    /// `OOMKilled`, `Error`, `Completed`, ...
    pub reason: String,
    /// The exit code.
    pub exit_code: i32,
    /// The termination message (the log tail, with `FallbackToLogsOnError`), first line only.
    pub message: String,
    /// When it ended.
    pub finished_at: Option<Time>,
}

/// One pod of the cluster, as the status sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Pod uid (a recreated pod has a new one).
    pub uid: String,
    /// StatefulSet ordinal, from the name.
    pub ordinal: Option<i32>,
    /// The `Ready` condition is true.
    pub ready: bool,
    /// Being deleted: whatever its `Ready` condition says, it is going away.
    pub terminating: bool,
    /// Its `controller-revision-hash` label: which StatefulSet revision it runs.
    pub revision: Option<String>,
    /// Restarts of the store-node container.
    pub restarts: i32,
    /// Why the store-node container waits (`ImagePullBackOff`, `ContainerCreating`, ...).
    pub waiting_reason: Option<String>,
    /// What the kubelet says about that wait.
    pub waiting_message: String,
    /// The container's last termination.
    pub last_termination: Option<Termination>,
    /// `PodScheduled` is false because no node fits, with the scheduler's message.
    pub unschedulable: Option<String>,
    /// The image the container runs or tries to run.
    pub image: String,
}

impl PodView {
    /// Reads what the status needs from `pod` of cluster `cluster`.
    pub fn from_pod(cluster: &str, pod: &Pod) -> Self {
        let name = pod.name_any();
        let status = pod.status.clone().unwrap_or_default();
        let container = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == names::CONTAINER_NAME);
        let waiting = container
            .as_ref()
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.clone());
        let last_termination = container
            .as_ref()
            .and_then(|c| c.last_state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(termination);
        let unschedulable = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
            .map(|c| c.message.unwrap_or_default());
        let image = container
            .as_ref()
            .map(|c| c.image.clone())
            .or_else(|| {
                pod.spec
                    .as_ref()?
                    .containers
                    .iter()
                    .find(|c| c.name == names::CONTAINER_NAME)?
                    .image
                    .clone()
            })
            .unwrap_or_default();
        Self {
            ordinal: names::ordinal_of(cluster, &name),
            uid: pod.uid().unwrap_or_default(),
            ready: pod_is_ready(pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            revision: pod.labels().get(LABEL_CONTROLLER_REVISION).cloned(),
            restarts: container.as_ref().map_or(0, |c| c.restart_count),
            waiting_reason: waiting.as_ref().and_then(|w| w.reason.clone()),
            waiting_message: waiting.and_then(|w| w.message).unwrap_or_default(),
            last_termination,
            unschedulable,
            image,
            name,
        }
    }
}

fn termination(terminated: &ContainerStateTerminated) -> Termination {
    Termination {
        reason: terminated.reason.clone().unwrap_or_default(),
        exit_code: terminated.exit_code,
        message: terminated
            .message
            .as_deref()
            .unwrap_or_default()
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .to_owned(),
        finished_at: terminated.finished_at.clone(),
    }
}

/// The counts of `status.replicas`, `readyReplicas` and `updatedReplicas`, from the pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCounts {
    /// Pods that exist, terminating or not (as a StatefulSet counts them).
    pub replicas: i32,
    /// Pods among the first `desired` ordinals that are ready and not being deleted.
    pub ready: i32,
    /// Pods among the first `desired` ordinals, not being deleted, on the StatefulSet's update
    /// revision (every one of them while that revision is not known yet).
    pub updated: i32,
}

/// Counts `pods` against `desired` nodes and the StatefulSet's `update_revision`. Only the
/// first `desired` ordinals count as ready: pods a scale-down is removing are not nodes the spec
/// asks for, so a cluster scaled from 3 to 1 is "1 of 1", never "3 of 1".
pub fn counts(pods: &[PodView], desired: i32, update_revision: Option<&str>) -> PodCounts {
    let wanted = |pod: &&PodView| {
        !pod.terminating
            && pod
                .ordinal
                .is_some_and(|ordinal| (0..desired).contains(&ordinal))
    };
    let count =
        |iter: &mut dyn Iterator<Item = &PodView>| i32::try_from(iter.count()).unwrap_or(i32::MAX);
    PodCounts {
        replicas: count(&mut pods.iter()),
        ready: count(&mut pods.iter().filter(wanted).filter(|pod| pod.ready)),
        updated: count(&mut pods.iter().filter(wanted).filter(|pod| {
            update_revision.is_none_or(|revision| pod.revision.as_deref() == Some(revision))
        })),
    }
}

/// A pod that is stuck, for `Degraded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    /// The `Degraded` reason (a `reason` constant).
    pub reason: &'static str,
    /// The pod, what is wrong and what to do.
    pub message: String,
}

/// How bad each kind of trouble is: the `Degraded` reason is that of the worst problem.
fn severity(reason: &str) -> u8 {
    match reason {
        reason::IMAGE_PULL_BACK_OFF => 0,
        reason::CONTAINER_CONFIG_ERROR => 1,
        reason::OOM_KILLED => 2,
        reason::CRASH_LOOP_BACK_OFF => 3,
        reason::SANDBOX_FAILED => 4,
        _ => 5,
    }
}

/// Why `pod` is stuck, if it is. `sandbox_failure` is the message of the latest
/// `FailedCreatePodSandBox` event of a pod whose container is still being created; `now` decides
/// whether an OOM kill is recent enough to report.
pub fn problem(pod: &PodView, sandbox_failure: Option<&str>, now: &Time) -> Option<PodProblem> {
    if pod.terminating {
        return None;
    }
    let name = &pod.name;
    let waiting = pod.waiting_reason.as_deref().unwrap_or_default();
    let detail = |text: &str| {
        if text.is_empty() {
            String::new()
        } else {
            format!(" ({text})")
        }
    };
    let last_exit = pod.last_termination.as_ref().map(|t| {
        let message = if t.message.is_empty() {
            String::new()
        } else {
            format!(": {}", t.message)
        };
        format!("last exit {}, code {}{message}", t.reason, t.exit_code)
    });
    match waiting {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
            return Some(PodProblem {
                reason: reason::IMAGE_PULL_BACK_OFF,
                message: format!(
                    "pod {name} cannot pull image {}: {waiting}{}. Check spec.image and spec.imagePullPolicy, and that the node can reach the registry; the other nodes keep serving",
                    pod.image,
                    detail(&pod.waiting_message)
                ),
            })
        }
        "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
            return Some(PodProblem {
                reason: reason::CONTAINER_CONFIG_ERROR,
                message: format!(
                    "pod {name} cannot start its container: {waiting}{}. Check what the message names (a Secret, a ConfigMap, a setting of the spec)",
                    detail(&pod.waiting_message)
                ),
            })
        }
        "CrashLoopBackOff" => {
            let oom = pod
                .last_termination
                .as_ref()
                .is_some_and(|t| t.reason == "OOMKilled");
            return Some(PodProblem {
                reason: if oom {
                    reason::OOM_KILLED
                } else {
                    reason::CRASH_LOOP_BACK_OFF
                },
                message: format!(
                    "pod {name} keeps crashing (CrashLoopBackOff, {} restarts{}). {}",
                    pod.restarts,
                    last_exit.map(|e| format!(", {e}")).unwrap_or_default(),
                    if oom {
                        "It runs out of memory: raise resources.limits.memory or lower memory.highWatermark".to_owned()
                    } else {
                        format!("See kubectl logs {name} --previous")
                    }
                ),
            });
        }
        _ => {}
    }
    if let Some(termination) = &pod.last_termination {
        if termination.reason == "OOMKilled" && recent(termination.finished_at.as_ref(), now) {
            return Some(PodProblem {
                reason: reason::OOM_KILLED,
                message: format!(
                    "pod {name} was OOM-killed{} ({} restarts): the node used more than its memory limit before it refused writes. Raise resources.limits.memory or lower memory.highWatermark",
                    termination
                        .finished_at
                        .as_ref()
                        .map(|t| format!(" at {}", t.0))
                        .unwrap_or_default(),
                    pod.restarts
                ),
            });
        }
    }
    if let Some(failure) = sandbox_failure {
        if waiting == "ContainerCreating" || waiting.is_empty() {
            let memory = if failure.contains("cannot allocate memory") {
                " The memory limit is too small to start a container: raise resources.limits.memory"
            } else {
                ""
            };
            return Some(PodProblem {
                reason: reason::SANDBOX_FAILED,
                message: format!(
                    "pod {name} cannot start: FailedCreatePodSandBox: {failure}.{memory}"
                ),
            });
        }
    }
    pod.unschedulable.as_ref().map(|scheduler| PodProblem {
        reason: reason::UNSCHEDULABLE,
        message: format!(
            "pod {name} cannot be scheduled{}. Free capacity on the nodes, lower resources.requests, or relax affinity, nodeSelector and tolerations",
            detail(scheduler)
        ),
    })
}

/// Whether `at` is less than [`OOM_REPORT_SECONDS`] before `now` (an unknown time is recent).
fn recent(at: Option<&Time>, now: &Time) -> bool {
    at.is_none_or(|at| now.0.as_second() - at.0.as_second() < OOM_REPORT_SECONDS)
}

/// The problems of every pod, worst first, then by pod name.
pub fn problems(
    pods: &[PodView],
    sandbox_failures: &BTreeMap<String, String>,
    now: &Time,
) -> Vec<PodProblem> {
    let mut found: Vec<(u8, &str, PodProblem)> = pods
        .iter()
        .filter_map(|pod| {
            let problem = problem(
                pod,
                sandbox_failures.get(&pod.name).map(String::as_str),
                now,
            )?;
            Some((severity(problem.reason), pod.name.as_str(), problem))
        })
        .collect();
    found.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    found.into_iter().map(|(_, _, problem)| problem).collect()
}

/// An OOM kill the operator has not reported yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// The pod (and node) name.
    pub pod: String,
    /// Its container's restarts after the kill.
    pub restarts: i32,
    /// When it was killed.
    pub at: Option<Time>,
}

/// The OOM kills among `pods` since `seen` (restarts by pod uid, as of the last look): a pod
/// whose restart count went up and whose last termination is `OOMKilled`. A pod seen for the
/// first time counts when its kill is recent, so a kill is reported even if it happened while the
/// operator was restarting.
pub fn oom_kills(pods: &[PodView], seen: &HashMap<String, i32>, now: &Time) -> Vec<OomKill> {
    pods.iter()
        .filter_map(|pod| {
            let termination = pod.last_termination.as_ref()?;
            if termination.reason != "OOMKilled" || pod.restarts == 0 {
                return None;
            }
            let new = match seen.get(&pod.uid) {
                Some(before) => pod.restarts > *before,
                None => recent(termination.finished_at.as_ref(), now),
            };
            new.then(|| OomKill {
                pod: pod.name.clone(),
                restarts: pod.restarts,
                at: termination.finished_at.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
                + k8s_openapi::jiff::SignedDuration::from_secs(seconds),
        )
    }

    fn pod(status: serde_json::Value) -> PodView {
        let pod: Pod = match serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-1", "uid": "u1",
                "labels": {"controller-revision-hash": "demo-abc"}},
            "spec": {"containers": [{"name": "store-node", "image": "store:1"}]},
            "status": status,
        })) {
            Ok(pod) => pod,
            Err(error) => panic!("bad test pod: {error}"),
        };
        PodView::from_pod("demo", &pod)
    }

    fn waiting(reason: &str, message: &str) -> PodView {
        pod(serde_json::json!({"containerStatuses": [{
            "name": "store-node", "image": "store:2", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}))
    }

    fn view(name: &str, ready: bool, terminating: bool, revision: &str) -> PodView {
        PodView {
            name: name.into(),
            ordinal: names::ordinal_of("demo", name),
            ready,
            terminating,
            revision: Some(revision.into()),
            ..PodView::default()
        }
    }

    #[test]
    fn counts_come_from_the_pods_and_the_ordinals_the_spec_asks_for() {
        let pods = [
            view("demo-0", true, false, "new"),
            view("demo-1", true, false, "old"),
            view("demo-2", true, true, "new"),
        ];
        // Scaled from 3 to 1: one node asked for, one ready; three pods still exist.
        assert_eq!(
            counts(&pods, 1, Some("new")),
            PodCounts {
                replicas: 3,
                ready: 1,
                updated: 1
            }
        );
        // Every pod deleted: none is ready any more although their Ready condition says so.
        let deleted: Vec<PodView> = pods
            .iter()
            .map(|p| PodView {
                terminating: true,
                ..p.clone()
            })
            .collect();
        assert_eq!(counts(&deleted, 3, Some("new")).ready, 0);
        assert_eq!(counts(&pods, 3, None).updated, 2, "revision not known yet");
    }

    #[test]
    fn a_pod_that_cannot_pull_its_image_is_named_with_what_to_do() {
        let stuck = waiting("ImagePullBackOff", "Back-off pulling image \"store:2\"");
        assert_eq!(
            problem(&stuck, None, &at(0)),
            Some(PodProblem {
                reason: reason::IMAGE_PULL_BACK_OFF,
                message: "pod demo-1 cannot pull image store:2: ImagePullBackOff (Back-off pulling image \"store:2\"). Check spec.image and spec.imagePullPolicy, and that the node can reach the registry; the other nodes keep serving".into(),
            })
        );
        assert_eq!(
            problem(&waiting("ErrImagePull", ""), None, &at(0)).map(|p| p.reason),
            Some(reason::IMAGE_PULL_BACK_OFF)
        );
    }

    #[test]
    fn a_crash_loop_names_the_last_exit_and_an_oom_loop_says_memory() {
        let crashing = pod(serde_json::json!({"containerStatuses": [{
            "name": "store-node", "image": "store:1", "imageID": "", "ready": false,
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                "message": "starting\nstore-node: cannot listen on 0.0.0.0:6379\n"}}}]}));
        assert_eq!(
            problem(&crashing, None, &at(0)),
            Some(PodProblem {
                reason: reason::CRASH_LOOP_BACK_OFF,
                message: "pod demo-1 keeps crashing (CrashLoopBackOff, 4 restarts, last exit Error, code 1: store-node: cannot listen on 0.0.0.0:6379). See kubectl logs demo-1 --previous".into(),
            })
        );
        let oom = pod(serde_json::json!({"containerStatuses": [{
            "name": "store-node", "image": "store:1", "imageID": "", "ready": false,
            "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}));
        assert_eq!(
            problem(&oom, None, &at(0)),
            Some(PodProblem {
                reason: reason::OOM_KILLED,
                message: "pod demo-1 keeps crashing (CrashLoopBackOff, 2 restarts, last exit OOMKilled, code 137). It runs out of memory: raise resources.limits.memory or lower memory.highWatermark".into(),
            })
        );
    }

    #[test]
    fn an_oom_kill_is_reported_for_ten_minutes_and_once_as_an_event() {
        let killed = pod(serde_json::json!({"containerStatuses": [{
            "name": "store-node", "image": "store:1", "imageID": "", "ready": true,
            "restartCount": 1, "state": {"running": {}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                "finishedAt": "1970-01-01T00:01:40Z"}}}]}));
        assert_eq!(
            problem(&killed, None, &at(160)),
            Some(PodProblem {
                reason: reason::OOM_KILLED,
                message: "pod demo-1 was OOM-killed at 1970-01-01T00:01:40Z (1 restarts): the node used more than its memory limit before it refused writes. Raise resources.limits.memory or lower memory.highWatermark".into(),
            })
        );
        assert_eq!(problem(&killed, None, &at(100 + OOM_REPORT_SECONDS)), None);

        let first_look = oom_kills(std::slice::from_ref(&killed), &HashMap::new(), &at(160));
        assert_eq!(
            first_look,
            [OomKill {
                pod: "demo-1".into(),
                restarts: 1,
                at: Some(at(100))
            }]
        );
        let seen = HashMap::from([("u1".to_owned(), 1)]);
        assert_eq!(
            oom_kills(std::slice::from_ref(&killed), &seen, &at(170)),
            []
        );
        let again = PodView {
            restarts: 2,
            ..killed.clone()
        };
        assert_eq!(
            oom_kills(std::slice::from_ref(&again), &seen, &at(9999)).len(),
            1
        );
        assert_eq!(
            oom_kills(
                std::slice::from_ref(&killed),
                &HashMap::new(),
                &at(100 + OOM_REPORT_SECONDS)
            ),
            [],
            "an old kill seen for the first time is history, not news"
        );
    }

    #[test]
    fn unschedulable_and_sandbox_failures_are_named() {
        let pending = pod(serde_json::json!({"conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory."}]}));
        assert_eq!(
            problem(&pending, None, &at(0)).map(|p| (p.reason, p.message)),
            Some((reason::UNSCHEDULABLE, "pod demo-1 cannot be scheduled (0/1 nodes are available: 1 Insufficient memory.). Free capacity on the nodes, lower resources.requests, or relax affinity, nodeSelector and tolerations".to_owned()))
        );
        let creating = waiting("ContainerCreating", "");
        let failure =
            "failed to create containerd task: OCI runtime create failed: cannot allocate memory";
        assert_eq!(
            problem(&creating, Some(failure), &at(0)).map(|p| (p.reason, p.message)),
            Some((reason::SANDBOX_FAILED, format!("pod demo-1 cannot start: FailedCreatePodSandBox: {failure}. The memory limit is too small to start a container: raise resources.limits.memory")))
        );
        assert_eq!(
            problem(&creating, None, &at(0)),
            None,
            "still being created"
        );
    }

    #[test]
    fn problems_are_sorted_worst_first_and_terminating_pods_have_none() {
        let mut crashing = waiting("CrashLoopBackOff", "");
        crashing.name = "demo-0".into();
        let pulling = waiting("ImagePullBackOff", "");
        let mut leaving = waiting("ImagePullBackOff", "");
        leaving.terminating = true;
        let found = problems(&[crashing, pulling, leaving], &BTreeMap::new(), &at(0));
        assert_eq!(
            found.iter().map(|p| p.reason).collect::<Vec<_>>(),
            [reason::IMAGE_PULL_BACK_OFF, reason::CRASH_LOOP_BACK_OFF]
        );
    }
}
