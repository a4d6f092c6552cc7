//! 7. Memory: a node with a small memory limit is filled until it refuses writes with Redis's
//!    exact OOM error (RESP and HTTP), the SessionCluster reports `MemoryPressure=True` with a
//!    Warning event; deleting sessions clears the alarm and writes succeed again.

use std::time::Duration;

use anyhow::{bail, ensure};
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, sessions, wait, Stopwatch};
use sessionstore_api::constants::{condition, reason, HTTP_PORT_NAME, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "memory";
const NAME: &str = "tight";
const LIMIT_BYTES: u64 = 96 * 1024 * 1024;
const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
const VALUE_BYTES: usize = 64 * 1024;

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn filling_memory_raises_pressure_and_deleting_clears_it() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        // A low high watermark keeps the data (~29 MiB) far below the cgroup limit, so the
        // kernel never OOM-kills the container before the node refuses writes.
        let spec = serde_json::json!({
            "resources": {"limits": {"memory": "96Mi"}},
            "memory": {"highWatermark": 0.3, "lowWatermark": 0.2},
        });
        cluster::create(&client, &ns, &cluster::manifest(NAME, 1, spec)?).await?;
        wait::cluster_ready(&client, &ns, NAME, 1, false, Duration::from_secs(180)).await?;
        report(TEST, format!("1 node Available after {clock}"));

        let password = cluster::password(&client, &ns, NAME).await?;
        let node_http = Forwarder::pod(&client, &ns, &names::pod(NAME, 0), 8080).await?;
        let status = sessions::node_status(node_http.addr()).await?;
        ensure!(status["memory"]["limitBytes"] == LIMIT_BYTES, "limitBytes {} (expected the 96Mi limit)", status["memory"]["limitBytes"]);
        let high = status["memory"]["highWatermarkBytes"].as_u64().unwrap_or(0);
        ensure!(high == (LIMIT_BYTES as f64 * 0.3) as u64, "highWatermarkBytes {high}");
        ensure!(status["memory"]["alarm"] == false, "alarm before filling: {status}");

        let resp = Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let web = Forwarder::service(&client, &ns, &names::client_service(NAME), HTTP_PORT_NAME).await?;
        let mut conn = sessions::connect(resp.addr(), &password).await?;
        let value = "m".repeat(VALUE_BYTES);
        let max_writes = (2 * LIMIT_BYTES as usize) / VALUE_BYTES;
        let clock = Stopwatch::start();
        let mut written = 0usize;
        let refusal = loop {
            if written >= max_writes {
                bail!("{written} writes of {VALUE_BYTES} bytes were all accepted; no OOM refusal");
            }
            let result: redis::RedisResult<()> = redis::cmd("SET").arg(format!("fill:{written}")).arg(&value).query_async(&mut conn).await;
            match result {
                Ok(()) => written += 1,
                Err(error) => break sessions::error_line(&error),
            }
        };
        report(TEST, format!("{written} writes of {VALUE_BYTES} bytes ({:.1} MiB) accepted before the refusal, in {clock}", (written * VALUE_BYTES) as f64 / 1048576.0));
        ensure!(refusal == OOM, "RESP refusal {refusal:?}, expected {OOM:?}");
        let put = sessions::http_put(web.addr(), &password, "one-more", &serde_json::json!({"big": "x"})).await?;
        ensure!(put.status == 507, "HTTP PUT above the watermark: {put:?}");
        ensure!(put.json()?["error"] == OOM, "HTTP error body {}", put.body);
        // Reads and deletes still work under pressure.
        let read: Option<String> = redis::cmd("GET").arg("fill:0").query_async(&mut conn).await?;
        ensure!(read.as_deref() == Some(value.as_str()), "GET under pressure failed");

        let clock = Stopwatch::start();
        let pressured = wait::cluster_until(&client, &ns, NAME, "MemoryPressure=True", Duration::from_secs(90), |c| {
            wait::condition_is(c, condition::MEMORY_PRESSURE, "True")
        })
        .await?;
        let message = wait::condition(&pressured, condition::MEMORY_PRESSURE).map(|c| c.message.clone()).unwrap_or_default();
        report(TEST, format!("MemoryPressure=True after {clock}: {message}"));
        let warning = wait::until(&client, &ns, "Warning event MemoryAboveHighWatermark", Duration::from_secs(30), || async {
            let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
            Ok(match events.iter().find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason::MEMORY_HIGH)) {
                Some(event) => Ok(diagnostics::event_line(event)),
                None => Err(format!("{} events, none a Warning {}", events.len(), reason::MEMORY_HIGH)),
            })
        })
        .await?;
        report(TEST, format!("event {warning}"));

        // Nothing was deleted yet: the node must still be in alarm and the condition still True.
        let status = sessions::node_status(node_http.addr()).await?;
        ensure!(status["memory"]["alarm"] == true, "node alarm cleared before any delete: {status}");
        let current = cluster::api(&client, &ns).get(NAME).await?;
        ensure!(
            wait::condition_is(&current, condition::MEMORY_PRESSURE, "True"),
            "MemoryPressure fell back before any delete: {}",
            wait::status_line(&current)
        );

        let clock = Stopwatch::start();
        let keys: Vec<String> = (0..written).map(|i| format!("fill:{i}")).collect();
        for chunk in keys.chunks(100) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
        }
        wait::cluster_until(&client, &ns, NAME, "MemoryPressure=False", Duration::from_secs(90), |c| {
            wait::condition_is(c, condition::MEMORY_PRESSURE, "False")
        })
        .await?;
        report(TEST, format!("deleted {written} keys: MemoryPressure=False after {clock}"));
        let status = sessions::node_status(node_http.addr()).await?;
        ensure!(status["memory"]["alarm"] == false, "node alarm after deleting: {status}");
        let () = redis::cmd("SET").arg("after").arg("ok").query_async(&mut conn).await?;
        let put = sessions::http_put(web.addr(), &password, "after", &serde_json::json!({"ok": true})).await?;
        ensure!(put.status == 201, "HTTP PUT after the alarm cleared: {put:?}");
        for event in diagnostics::cluster_events(&client, &ns, NAME).await? {
            report(TEST, format!("event {}", diagnostics::event_line(&event)));
        }
        Ok(())
    })
    .await
}
