//! 16. How fast the status follows a node: fill one node until it refuses writes (its memory
//!     alarm is up), measure until `MemoryPressure=True`; delete the keys (alarm down), measure
//!     until `MemoryPressure=False`. Both within 10 s: the operator polls a node near its high
//!     watermark every 2 s and reconciles as soon as its report changes.

use std::time::Duration;

use anyhow::{bail, ensure};
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, report, sessions, wait, Stopwatch};
use sessionstore_api::constants::{condition, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "pressure-latency";
const NAME: &str = "pressed";
const VALUE_BYTES: usize = 64 * 1024;
const LIMIT_BYTES: usize = 128 * 1024 * 1024;
const MOST_LATENCY: Duration = Duration::from_secs(10);

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn memory_pressure_follows_the_node_alarm_within_seconds() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let spec = serde_json::json!({"memory": {"highWatermark": 0.5, "lowWatermark": 0.4}});
        cluster::create(&client, &ns, &cluster::manifest(NAME, 1, spec)?).await?;
        wait::cluster_ready(&client, &ns, NAME, 1, false, Duration::from_secs(180)).await?;
        let password = cluster::password(&client, &ns, NAME).await?;
        let node = Forwarder::pod(&client, &ns, &names::pod(NAME, 0), 8080).await?;
        let resp =
            Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let mut conn = sessions::connect(resp.addr(), &password).await?;
        // Settled before the fill: no alarm, MemoryPressure False for this generation.
        wait::cluster_until(
            &client,
            &ns,
            NAME,
            "MemoryPressure=False",
            Duration::from_secs(60),
            |c| wait::condition_is(c, condition::MEMORY_PRESSURE, "False"),
        )
        .await?;

        let value = "p".repeat(VALUE_BYTES);
        let mut written = 0usize;
        let refused_at = loop {
            if written >= 2 * LIMIT_BYTES / VALUE_BYTES {
                bail!("{written} writes of {VALUE_BYTES} bytes accepted; no refusal");
            }
            let result: redis::RedisResult<()> = redis::cmd("SET")
                .arg(format!("fill:{written}"))
                .arg(&value)
                .query_async(&mut conn)
                .await;
            match result {
                Ok(()) => written += 1,
                Err(error) => {
                    let line = sessions::error_line(&error);
                    ensure!(line.starts_with("OOM "), "refusal {line:?}");
                    break Stopwatch::start();
                }
            }
        };
        let status = sessions::node_status(node.addr()).await?;
        ensure!(
            status["memory"]["alarm"] == true,
            "refused without an alarm: {status}"
        );
        wait::cluster_until(
            &client,
            &ns,
            NAME,
            "MemoryPressure=True",
            MOST_LATENCY,
            |c| wait::condition_is(c, condition::MEMORY_PRESSURE, "True"),
        )
        .await?;
        let raised = refused_at.elapsed();
        report(
            TEST,
            format!(
                "{written} writes of 64 KiB, first refusal -> MemoryPressure=True in {:.1}s",
                raised.as_secs_f64()
            ),
        );

        let keys: Vec<String> = (0..written).map(|i| format!("fill:{i}")).collect();
        for chunk in keys.chunks(100) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        let cleared_at = wait::until(
            &client,
            &ns,
            "the node's alarm down",
            Duration::from_secs(30),
            || async {
                let status = sessions::node_status(node.addr()).await?;
                Ok(if status["memory"]["alarm"] == false {
                    Ok(Stopwatch::start())
                } else {
                    Err(format!("memory {}", status["memory"]))
                })
            },
        )
        .await?;
        wait::cluster_until(
            &client,
            &ns,
            NAME,
            "MemoryPressure=False",
            MOST_LATENCY,
            |c| wait::condition_is(c, condition::MEMORY_PRESSURE, "False"),
        )
        .await?;
        report(
            TEST,
            format!("keys deleted, alarm down -> MemoryPressure=False in {cleared_at}"),
        );
        Ok(())
    })
    .await
}
