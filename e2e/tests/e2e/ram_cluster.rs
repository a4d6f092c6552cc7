//! 2. A 3-node ram SessionCluster (keyspace notifications `Egx` from the spec, seen by
//!    `CONFIG GET` on every pod) becomes Available and Clustered; sessions written through the
//!    client Service (RESP with the password of the generated auth Secret, and HTTP) are readable
//!    from every pod, and every node reports itself and its two peers on `/v1/status`.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, http, report, sessions, wait, Stopwatch};
use kube::ResourceExt;
use sessionstore_api::constants::{HTTP_PORT_NAME, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "ram-cluster";
const NAME: &str = "web";

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn three_ram_nodes_serve_every_session_from_every_pod() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(
            &client,
            &ns,
            &cluster::manifest(NAME, 3, serde_json::json!({"notifyKeyspaceEvents": "Egx"}))?,
        )
        .await?;
        let ready =
            wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(
            TEST,
            format!("3 nodes Available and Clustered after {clock}"),
        );
        let status = ready.status.clone().unwrap_or_default();
        ensure!(
            status.ready.as_deref() == Some("3/3"),
            "status.ready {:?}",
            status.ready
        );
        // A label selector's terms are unordered: compare them as a set.
        let terms = |selector: &str| -> BTreeSet<String> {
            selector.split(',').map(str::to_owned).collect()
        };
        ensure!(
            status.selector.as_deref().map(terms) == Some(terms(&names::selector_string(NAME))),
            "status.selector {:?}, expected the terms of {}",
            status.selector,
            names::selector_string(NAME)
        );

        let password = cluster::password(&client, &ns, NAME).await?;
        let resp =
            Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let web =
            Forwarder::service(&client, &ns, &names::client_service(NAME), HTTP_PORT_NAME).await?;

        // Without credentials both protocols refuse.
        let anonymous = http::request(web.addr(), "GET", "/v1/sessions/nobody", None, None).await?;
        ensure!(
            anonymous.status == 401,
            "HTTP without a token: {anonymous:?}"
        );

        let keys = sessions::write_keys(resp.addr(), &password, "resp", 120, 6).await?;
        let http_sessions =
            sessions::write_http_sessions(web.addr(), &password, "http", 30).await?;
        report(
            TEST,
            format!(
                "wrote {} RESP keys and {} HTTP sessions through the Service",
                keys.len(),
                http_sessions.len()
            ),
        );

        let pods: Vec<String> = wait::cluster_pods(&client, &ns, NAME)
            .await?
            .iter()
            .map(|p| p.name_any())
            .collect();
        let expected_pods: Vec<String> = (0..3).map(|i| names::pod(NAME, i)).collect();
        ensure!(pods == expected_pods, "pods {pods:?}");
        let clock = Stopwatch::start();
        sessions::verify_on_pods(
            &client,
            &ns,
            &pods,
            &password,
            &keys,
            Duration::from_secs(20),
        )
        .await?;
        sessions::verify_http_on_pods(
            &client,
            &ns,
            &pods,
            &password,
            &http_sessions,
            Duration::from_secs(20),
        )
        .await?;
        // An HTTP session is the hash session:{id} for Redis clients too.
        for pod in &pods {
            let forwarder = Forwarder::pod(&client, &ns, pod, 6379).await?;
            let mut conn = sessions::connect(forwarder.addr(), &password).await?;
            // spec.notifyKeyspaceEvents reached the node, in Redis's canonical rendering.
            let events: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events")
                .query_async(&mut conn)
                .await?;
            ensure!(
                events == ["notify-keyspace-events", "gxE"],
                "{pod}: CONFIG GET notify-keyspace-events = {events:?}"
            );
            for (id, data) in &http_sessions {
                let text: Option<String> = redis::cmd("HGET")
                    .arg(format!("session:{id}"))
                    .arg("data")
                    .query_async(&mut conn)
                    .await?;
                let parsed: Option<serde_json::Value> =
                    text.as_deref().map(serde_json::from_str).transpose()?;
                ensure!(
                    parsed.as_ref() == Some(data),
                    "{pod}: HGET session:{id} data = {text:?}"
                );
            }
        }
        report(
            TEST,
            format!(
                "checked {} sessions on each of {} pods ({} reads) in {clock}",
                keys.len() + 2 * http_sessions.len(),
                pods.len(),
                pods.len() * (keys.len() + 2 * http_sessions.len())
            ),
        );

        // /v1/status of every node (docs/contract.md): itself, ready, ram, both peers connected.
        for pod in &pods {
            let forwarder = Forwarder::pod(&client, &ns, pod, 8080).await?;
            let node = sessions::node_status(forwarder.addr()).await?;
            ensure!(
                node["nodeName"] == pod.as_str(),
                "{pod}: nodeName {}",
                node["nodeName"]
            );
            ensure!(node["state"] == "ready", "{pod}: state {}", node["state"]);
            ensure!(
                node["storage"]["mode"] == "ram",
                "{pod}: storage {}",
                node["storage"]
            );
            let keys_held = node["keys"].as_u64().unwrap_or(0);
            ensure!(
                keys_held >= (keys.len() + http_sessions.len()) as u64,
                "{pod}: keys {keys_held}"
            );
            let peers: BTreeSet<String> = node["peers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|p| p["connected"] == true)
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            let others: BTreeSet<String> = pods.iter().filter(|p| *p != pod).cloned().collect();
            ensure!(
                peers == others,
                "{pod}: connected peers {peers:?}, expected {others:?}: {node}"
            );
        }
        let members = wait::cluster_until(
            &client,
            &ns,
            NAME,
            "3 members reported",
            Duration::from_secs(30),
            |c| c.status.as_ref().is_some_and(|s| s.members.len() == 3),
        )
        .await?;
        let member_names: Vec<String> = members
            .status
            .unwrap_or_default()
            .members
            .iter()
            .map(|m| m.name.clone())
            .collect();
        ensure!(
            member_names == expected_pods,
            "status.members {member_names:?}"
        );
        Ok(())
    })
    .await
}
