//! 15. Deleting the generated `<name>-auth` Secret while a client keeps connecting with the old
//!     password: the operator generates a new one, announces it (`PasswordChanged`), rolls the
//!     pods with both passwords accepted, then drops the old one from what new pods get
//!     (`PasswordRotated`). The client never gets `WRONGPASS`; the new password works on every
//!     node afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use e2e::forward::Forwarder;
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, sessions, wait, Stopwatch};
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};
use sessionstore_api::constants::{reason, RESP_PORT_NAME};
use sessionstore_api::names;

const TEST: &str = "password-rotation";
const NAME: &str = "rotating";

/// What the connecting client saw.
#[derive(Debug, Default)]
struct Logins {
    attempts: u64,
    written: u64,
    wrongpass: u64,
    /// Other failures (a node going away mid-command), by message.
    other: Vec<String>,
}

/// Connects (AUTH) and writes once every 100 ms with `password` until `stop`.
async fn log_in_repeatedly(
    addr: std::net::SocketAddr,
    password: String,
    stop: Arc<AtomicBool>,
) -> Logins {
    let mut logins = Logins::default();
    while !stop.load(Ordering::Relaxed) {
        logins.attempts += 1;
        match sessions::connect(addr, &password).await {
            Ok(mut conn) => {
                let written: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("login:{}", logins.attempts))
                    .arg("x")
                    .arg("EX")
                    .arg(600)
                    .query_async(&mut conn)
                    .await;
                match written {
                    Ok(()) => logins.written += 1,
                    Err(error) => logins
                        .other
                        .push(format!("SET: {}", sessions::error_line(&error))),
                }
            }
            Err(error) => {
                let text = format!("{error:#}");
                if text.contains("WRONGPASS") {
                    logins.wrongpass += 1;
                }
                logins.other.push(text);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    logins
}

async fn event_note(
    client: &Client,
    ns: &str,
    wanted: &str,
) -> anyhow::Result<Result<String, String>> {
    let events = diagnostics::cluster_events(client, ns, NAME).await?;
    Ok(
        match events.iter().find(|e| e.reason.as_deref() == Some(wanted)) {
            Some(event) => Ok(event.message.clone().unwrap_or_default()),
            None => Err(format!("{} events, none {wanted}", events.len())),
        },
    )
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn deleting_the_auth_secret_never_locks_a_client_out() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let clock = Stopwatch::start();
        cluster::create(
            &client,
            &ns,
            &cluster::manifest(NAME, 3, serde_json::json!({}))?,
        )
        .await?;
        wait::cluster_ready(&client, &ns, NAME, 3, true, Duration::from_secs(180)).await?;
        report(
            TEST,
            format!("3 nodes Available and Clustered after {clock}"),
        );
        let old = cluster::password(&client, &ns, NAME).await?;
        let before: Vec<String> = wait::cluster_pods(&client, &ns, NAME)
            .await?
            .iter()
            .filter_map(|p| p.uid())
            .collect();

        let resp =
            Forwarder::service(&client, &ns, &names::client_service(NAME), RESP_PORT_NAME).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let logins = tokio::spawn(log_in_repeatedly(resp.addr(), old.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;

        let clock = Stopwatch::start();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        secrets
            .delete(&names::auth_secret(NAME), &DeleteParams::default())
            .await?;
        let changed = wait::until(
            &client,
            &ns,
            "event PasswordChanged",
            Duration::from_secs(60),
            || event_note(&client, &ns, reason::PASSWORD_CHANGED),
        )
        .await?;
        report(
            TEST,
            format!("Secret deleted: PasswordChanged after {clock}: {changed}"),
        );
        ensure!(
            changed.starts_with(&format!(
                "Secret {} was missing and was generated again with a new password: ",
                names::auth_secret(NAME)
            )),
            "PasswordChanged note {changed:?}"
        );
        let new = cluster::password(&client, &ns, NAME).await?;
        ensure!(new != old, "the generated password did not change");

        let rotated = wait::until(
            &client,
            &ns,
            "event PasswordRotated",
            Duration::from_secs(300),
            || event_note(&client, &ns, reason::PASSWORD_ROTATED),
        )
        .await?;
        report(
            TEST,
            format!("every pod rolled: PasswordRotated after {clock}: {rotated}"),
        );
        let after = wait::cluster_pods(&client, &ns, NAME).await?;
        let replaced = after
            .iter()
            .filter(|p| !before.contains(&p.uid().unwrap_or_default()))
            .count();
        ensure!(replaced == 3, "{replaced} of 3 pods replaced");
        stop.store(true, Ordering::Relaxed);
        let logins = logins.await?;
        report(
            TEST,
            format!(
                "old-password client: {} logins, {} writes, {} WRONGPASS, {} other errors {:?}",
                logins.attempts,
                logins.written,
                logins.wrongpass,
                logins.other.len(),
                logins.other.iter().take(5).collect::<Vec<_>>()
            ),
        );
        ensure!(
            logins.wrongpass == 0,
            "a client with the old password was refused {} times during the roll",
            logins.wrongpass
        );
        ensure!(
            logins.written > 50,
            "too few writes during the roll: {logins:?}"
        );

        // Every node accepts the new password now.
        for pod in after.iter().map(|p| p.name_any()) {
            let forwarder = Forwarder::pod(&client, &ns, &pod, 6379).await?;
            let mut conn = sessions::connect(forwarder.addr(), &new).await?;
            let () = redis::cmd("SET")
                .arg(format!("new:{pod}"))
                .arg("ok")
                .query_async(&mut conn)
                .await?;
        }
        let node_secret = secrets.get(&names::node_auth_secret(NAME)).await?;
        let accepted = node_secret
            .data
            .and_then(|d| {
                d.get("password")
                    .map(|b| String::from_utf8_lossy(&b.0).lines().count())
            })
            .unwrap_or(0);
        ensure!(
            accepted == 1,
            "{} keeps {accepted} passwords after the rotation",
            names::node_auth_secret(NAME)
        );
        report(
            TEST,
            "the new password works on every pod; the nodes' Secret holds it alone",
        );
        Ok(())
    })
    .await
}
