//! 7. Memory: clusters at the default watermarks with a 64Mi (3 nodes) and a 256Mi (2 nodes)
//!    limit are filled through the client Service with 1 KiB and 32 KiB values, one write at a
//!    time (several clients, each waiting for every reply) and pipelined. Every fill ends with
//!    Redis's exact `OOM` error, after which every node refuses a write with the same error,
//!    no pod ever restarts (the kernel's OOM killer never ran), the SessionCluster reports
//!    `MemoryPressure=True`, and deleting the keys clears every node's alarm and the condition.
//!    With `volatile-lru` the same fills evict keys instead: no write fails, nothing restarts.
//!    Each fill reports the figures at the refusal: every node's used memory (its footprint),
//!    data estimate and cgroup charge (docs/memory.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, sessions, wait, Stopwatch};
use kube::Client;
use sessionstore_api::constants::{condition, RESP_PORT_NAME};
use sessionstore_api::names;

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
const MIB: u64 = 1 << 20;

/// How long the SessionCluster may take to show a node's alarm change in `MemoryPressure`:
/// measured from the first refusal, and from the last delete. The nodes' own alarms
/// are asserted within [`NODE_ALARM_WITHIN`]; the condition follows the operator's member
/// watch, which polls the nodes every 2 s while one is in alarm.
const PRESSURE_WITHIN: Duration = Duration::from_secs(10);

/// How long every node may take to clear its alarm after the keys are deleted (the footprint is
/// sampled every 100 ms; freed pages go back to the kernel within the next ticks).
const NODE_ALARM_WITHIN: Duration = Duration::from_secs(10);

/// One way of filling.
#[derive(Debug, Clone, Copy)]
struct FillKind {
    value_bytes: usize,
    /// Requests per round trip (1 = one write at a time).
    pipeline: usize,
    /// Connections writing side by side through the Service.
    clients: usize,
}

impl std::fmt::Display for FillKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = if self.value_bytes >= 1024 {
            format!("{} KiB", self.value_bytes / 1024)
        } else {
            format!("{} B", self.value_bytes)
        };
        if self.pipeline == 1 {
            write!(
                formatter,
                "{size} values one at a time ({} clients)",
                self.clients
            )
        } else {
            write!(
                formatter,
                "{size} values pipelined by {} ({} clients)",
                self.pipeline, self.clients
            )
        }
    }
}

const FILLS: [FillKind; 4] = [
    FillKind {
        value_bytes: 1024,
        pipeline: 1,
        clients: 8,
    },
    FillKind {
        value_bytes: 1024,
        pipeline: 64,
        clients: 2,
    },
    FillKind {
        value_bytes: 32 * 1024,
        pipeline: 1,
        clients: 4,
    },
    FillKind {
        value_bytes: 32 * 1024,
        pipeline: 16,
        clients: 2,
    },
];

/// What a fill did.
struct Filled {
    /// Every key a SET was sent for (accepted or not).
    keys: Vec<String>,
    /// Accepted writes.
    accepted: u64,
    /// The first error, if any.
    refusal: Option<String>,
    /// When the first error came.
    refused_at: Option<Stopwatch>,
    /// Writes answered `NOREPLICAS` (applied, not acknowledged by a peer in time).
    unacknowledged: u64,
}

/// Writes `kind` values with a TTL through `service` until the first error (`stop_at_error`)
/// or until `budget` bytes were accepted.
async fn fill(
    service: &Forwarder,
    password: &str,
    prefix: &str,
    kind: FillKind,
    budget: u64,
    stop_at_error: bool,
) -> anyhow::Result<Filled> {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let unacknowledged = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<(String, Stopwatch)>>> = Arc::default();
    let mut tasks = Vec::new();
    for client in 0..kind.clients {
        let mut connection = sessions::connect(service.addr(), password).await?;
        let (stop, accepted, first_error) = (stop.clone(), accepted.clone(), first_error.clone());
        let unacknowledged = unacknowledged.clone();
        let prefix = format!("{prefix}:{client}");
        tasks.push(tokio::spawn(async move {
            let value = "v".repeat(kind.value_bytes);
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if accepted.load(Ordering::Relaxed) * kind.value_bytes as u64 >= budget {
                    break;
                }
                // Errors come back in place, as a client sees each reply of a pipeline.
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for index in sent..sent + kind.pipeline {
                    pipe.cmd("SET")
                        .arg(format!("{prefix}:{index}"))
                        .arg(&value)
                        .arg("EX")
                        .arg(3600);
                }
                sent += kind.pipeline;
                let replies: Vec<String> =
                    match pipe.query_async::<Vec<redis::Value>>(&mut connection).await {
                        Ok(values) => values.iter().map(reply_line).collect(),
                        Err(error) => vec![sessions::error_line(&error)],
                    };
                let ok = replies.iter().filter(|reply| *reply == "OK").count();
                accepted.fetch_add(ok as u64, Ordering::Relaxed);
                // A write the peer did not acknowledge in time on a loaded machine is applied
                // and replicates; it is counted, and the fill goes on.
                let late = replies
                    .iter()
                    .filter(|reply| reply.starts_with("NOREPLICAS"))
                    .count();
                unacknowledged.fetch_add(late as u64, Ordering::Relaxed);
                if let Some(error) = replies
                    .into_iter()
                    .find(|reply| reply != "OK" && !reply.starts_with("NOREPLICAS"))
                {
                    let mut first = first_error.lock().unwrap_or_else(PoisonError::into_inner);
                    if first.is_none() {
                        *first = Some((error, Stopwatch::start()));
                    }
                    if stop_at_error {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            (prefix, sent)
        }));
    }
    let mut keys = Vec::new();
    for task in tasks {
        let (prefix, sent) = task.await.context("fill task")?;
        keys.extend((0..sent).map(|index| format!("{prefix}:{index}")));
    }
    let first = first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    Ok(Filled {
        keys,
        accepted: accepted.load(Ordering::Relaxed),
        refusal: first.as_ref().map(|(line, _)| line.clone()),
        refused_at: first.map(|(_, at)| at),
        unacknowledged: unacknowledged.load(Ordering::Relaxed),
    })
}

/// One reply of a pipeline as a line: `OK`, or an error's `CODE detail`.
fn reply_line(value: &redis::Value) -> String {
    match value {
        redis::Value::Okay => "OK".to_string(),
        redis::Value::SimpleString(text) => text.clone(),
        redis::Value::ServerError(error) => match error.details() {
            Some(detail) => format!("{} {detail}", error.code()),
            None => error.code().to_string(),
        },
        other => format!("{other:?}"),
    }
}

/// Fails when any pod of the cluster restarted (an OOM kill restarts the container).
async fn no_restarts(client: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    for pod in wait::cluster_pods(client, ns, name).await? {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        for status in pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
        {
            let last = status
                .last_state
                .and_then(|s| s.terminated)
                .map(|t| t.reason.unwrap_or_default());
            ensure!(
                status.restart_count == 0,
                "{pod_name} restarted {} time(s), last termination: {last:?}",
                status.restart_count
            );
        }
    }
    Ok(())
}

/// One line of a node's memory figures from its `/v1/status`.
fn memory_line(status: &serde_json::Value) -> String {
    let memory = &status["memory"];
    let mib = |field: &str| {
        memory[field]
            .as_u64()
            .map_or("-".to_string(), |v| format!("{:.1}", v as f64 / MIB as f64))
    };
    format!(
        "{}: used {} MiB (data {}, cgroup {}, rss {}) high {} of limit {}, alarm {}, peers in alarm {}",
        status["nodeName"].as_str().unwrap_or("?"),
        mib("usedBytes"),
        mib("dataBytes"),
        mib("cgroupBytes"),
        mib("rssBytes"),
        mib("highWatermarkBytes"),
        mib("limitBytes"),
        memory["alarm"],
        memory["peersInAlarm"],
    )
}

/// A cluster under test: its Service forwarders and each pod's RESP and HTTP forwarders.
struct Cluster {
    name: &'static str,
    password: String,
    service: Forwarder,
    pods: Vec<(String, Forwarder, Forwarder)>,
}

async fn start_cluster(
    client: &Client,
    ns: &str,
    test: &str,
    name: &'static str,
    replicas: i32,
    limit: &str,
    policy: &str,
) -> anyhow::Result<Cluster> {
    let clock = Stopwatch::start();
    let spec = serde_json::json!({
        "resources": {"limits": {"memory": limit}},
        "memory": {"evictionPolicy": policy},
    });
    cluster::create(client, ns, &cluster::manifest(name, replicas, spec)?).await?;
    wait::cluster_ready(client, ns, name, replicas, true, Duration::from_secs(240)).await?;
    report(
        test,
        format!("{replicas} nodes of {limit} ({policy}) Available after {clock}"),
    );
    let password = cluster::password(client, ns, name).await?;
    let service =
        Forwarder::service(client, ns, &names::client_service(name), RESP_PORT_NAME).await?;
    let mut pods = Vec::new();
    for ordinal in 0..replicas {
        let pod = names::pod(name, ordinal);
        let resp = Forwarder::pod(client, ns, &pod, 6379).await?;
        let http = Forwarder::pod(client, ns, &pod, 8080).await?;
        pods.push((pod, resp, http));
    }
    Ok(Cluster {
        name,
        password,
        service,
        pods,
    })
}

/// Fills `cluster` (noeviction) with each kind until refused, checks what every node does, and
/// deletes the keys again.
async fn fill_until_refused(
    client: &Client,
    ns: &str,
    test: &str,
    cluster: &Cluster,
    limit_bytes: u64,
) -> anyhow::Result<()> {
    for (round, kind) in FILLS.into_iter().enumerate() {
        let clock = Stopwatch::start();
        let filled = fill(
            &cluster.service,
            &cluster.password,
            &format!("fill{round}"),
            kind,
            4 * limit_bytes,
            true,
        )
        .await?;
        let Some(refusal) = filled.refusal.clone() else {
            bail!(
                "{kind}: {} writes accepted ({} MiB) on {} nodes of {} MiB without a refusal",
                filled.accepted,
                filled.accepted * kind.value_bytes as u64 / MIB,
                cluster.pods.len(),
                limit_bytes / MIB
            );
        };
        ensure!(
            refusal == OOM,
            "{kind}: the fill ended with {refusal:?}, expected {OOM:?} (after {} accepted writes)",
            filled.accepted
        );
        let refused_at = filled.refused_at.unwrap_or(clock);
        report(
            test,
            format!(
                "{kind}: {} writes ({:.1} MiB of values) accepted ({} of them NOREPLICAS), then {OOM} after {clock}",
                filled.accepted + filled.unacknowledged,
                ((filled.accepted + filled.unacknowledged) * kind.value_bytes as u64) as f64 / MIB as f64,
                filled.unacknowledged
            ),
        );
        // Every node refuses: its own alarm, or a peer's that it replicates to.
        for (pod, resp, http) in &cluster.pods {
            let status = sessions::node_status(http.addr()).await?;
            report(
                test,
                format!("{kind}: at the refusal {}", memory_line(&status)),
            );
            let mut connection = sessions::connect(resp.addr(), &cluster.password).await?;
            let result: redis::RedisResult<()> = redis::cmd("SET")
                .arg("probe")
                .arg("x".repeat(kind.value_bytes))
                .query_async(&mut connection)
                .await;
            let line = result.err().map(|error| sessions::error_line(&error));
            ensure!(
                line.as_deref() == Some(OOM),
                "{kind}: {pod} answered a write after the refusal with {line:?}: {}",
                memory_line(&status)
            );
        }
        no_restarts(client, ns, cluster.name).await?;
        let pressured = wait::cluster_until(
            client,
            ns,
            cluster.name,
            "MemoryPressure=True",
            PRESSURE_WITHIN,
            |c| wait::condition_is(c, condition::MEMORY_PRESSURE, "True"),
        )
        .await?;
        ensure!(
            refused_at.elapsed() <= PRESSURE_WITHIN,
            "{kind}: MemoryPressure=True only {refused_at} after the first refusal"
        );
        let message = wait::condition(&pressured, condition::MEMORY_PRESSURE)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        report(
            test,
            format!("{kind}: MemoryPressure=True {refused_at} after the first refusal: {message}"),
        );

        let clock = Stopwatch::start();
        let mut connection = sessions::connect(cluster.service.addr(), &cluster.password).await?;
        // A delete answered NOREPLICAS was applied and replicates (a peer acknowledged it late
        // on a loaded machine), as the fills count it; every node's alarm is awaited below.
        let mut late = 0;
        for chunk in filled.keys.chunks(500) {
            let reply: redis::RedisResult<i64> = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut connection)
                .await;
            match reply {
                Ok(_) => {}
                Err(error) if error.code() == Some("NOREPLICAS") => late += 1,
                Err(error) => bail!("{kind}: DEL of {} keys: {error}", chunk.len()),
            }
        }
        report(
            test,
            format!(
                "{kind}: {} keys deleted in {clock} ({late} DEL of 500 answered NOREPLICAS)",
                filled.keys.len()
            ),
        );
        let clock = Stopwatch::start();
        for (pod, _, http) in &cluster.pods {
            let cleared = wait::until(
                client,
                ns,
                &format!("{pod} memory alarm cleared"),
                NODE_ALARM_WITHIN,
                || async {
                    let status = sessions::node_status(http.addr()).await?;
                    let quiet = status["memory"]["alarm"] == false
                        && status["memory"]["peersInAlarm"] == serde_json::json!([]);
                    Ok(if quiet {
                        Ok(memory_line(&status))
                    } else {
                        Err(memory_line(&status))
                    })
                },
            )
            .await?;
            report(
                test,
                format!("{kind}: {clock} after the last delete {cleared}"),
            );
        }
        wait::cluster_until(
            client,
            ns,
            cluster.name,
            "MemoryPressure=False",
            PRESSURE_WITHIN,
            |c| wait::condition_is(c, condition::MEMORY_PRESSURE, "False"),
        )
        .await?;
        ensure!(
            clock.elapsed() <= PRESSURE_WITHIN,
            "{kind}: MemoryPressure=False only {clock} after the last delete"
        );
        report(
            test,
            format!(
                "{kind}: MemoryPressure=False {clock} after the last of {} deletes",
                filled.keys.len()
            ),
        );
        let () = redis::cmd("SET")
            .arg("after")
            .arg("ok")
            .query_async(&mut connection)
            .await?;
        no_restarts(client, ns, cluster.name).await?;
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn memory_64mi_every_node_refuses_before_the_oom_killer() -> anyhow::Result<()> {
    const TEST: &str = "memory-64mi";
    with_namespace(TEST, |client, ns| async move {
        let cluster = start_cluster(&client, &ns, TEST, "tight", 3, "64Mi", "noeviction").await?;
        fill_until_refused(&client, &ns, TEST, &cluster, 64 * MIB).await
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn memory_256mi_every_node_refuses_before_the_oom_killer() -> anyhow::Result<()> {
    const TEST: &str = "memory-256mi";
    with_namespace(TEST, |client, ns| async move {
        let cluster = start_cluster(&client, &ns, TEST, "roomy", 2, "256Mi", "noeviction").await?;
        fill_until_refused(&client, &ns, TEST, &cluster, 256 * MIB).await
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn memory_volatile_lru_evicts_and_nothing_is_killed() -> anyhow::Result<()> {
    const TEST: &str = "memory-lru";
    with_namespace(TEST, |client, ns| async move {
        let cluster =
            start_cluster(&client, &ns, TEST, "evicting", 3, "64Mi", "volatile-lru").await?;
        for (round, kind) in FILLS.into_iter().enumerate() {
            let clock = Stopwatch::start();
            // Twice the limit in values: far more than fits.
            let filled = fill(
                &cluster.service,
                &cluster.password,
                &format!("lru{round}"),
                kind,
                2 * 64 * MIB,
                false,
            )
            .await?;
            ensure!(
                filled.refusal.is_none(),
                "{kind}: a write failed under volatile-lru: {:?} (after {} accepted)",
                filled.refusal,
                filled.accepted
            );
            report(
                TEST,
                format!(
                    "{kind}: {} writes ({:.1} MiB of values) accepted ({} of them NOREPLICAS) in {clock}",
                    filled.accepted + filled.unacknowledged,
                    ((filled.accepted + filled.unacknowledged) * kind.value_bytes as u64) as f64 / MIB as f64,
                    filled.unacknowledged
                ),
            );
            let mut evicted = 0;
            for (_, resp, http) in &cluster.pods {
                let mut connection = sessions::connect(resp.addr(), &cluster.password).await?;
                let info: String = redis::cmd("INFO")
                    .arg("stats")
                    .query_async(&mut connection)
                    .await?;
                evicted += info
                    .lines()
                    .find_map(|line| line.strip_prefix("evicted_keys:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                report(
                    TEST,
                    format!(
                        "{kind}: {}",
                        memory_line(&sessions::node_status(http.addr()).await?)
                    ),
                );
            }
            ensure!(evicted > 0, "{kind}: no node evicted a key");
            report(
                TEST,
                format!("{kind}: {evicted} evictions so far on all nodes"),
            );
            no_restarts(&client, &ns, cluster.name).await?;
        }
        Ok(())
    })
    .await
}
