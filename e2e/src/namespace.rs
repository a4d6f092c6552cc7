//! A temporary namespace per test, in the manner of linkerd's policy-test `with_temp_ns`: the
//! test body runs in a spawned task, so a panic is caught like an error; on failure the
//! namespace's SessionClusters, pods and events are printed; the namespace is deleted either way
//! (unless `E2E_KEEP_NAMESPACES=1`, for debugging).

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::diagnostics;

/// Label on every namespace the suite creates; `run.sh` deletes leftovers by it.
pub const E2E_LABEL: &str = "sessionstore.dev/e2e";

/// A unique namespace name `e2e-<test>-<suffix>` (lowercase DNS label, at most 63 characters).
pub fn unique_name(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    let suffix = format!(
        "{:05x}",
        (nanos ^ std::process::id().rotate_left(16)) & 0xfffff
    );
    let mut base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(50);
    format!("e2e-{}-{suffix}", base.trim_matches('-'))
}

/// Creates a namespace for `test`, runs `body(client, namespace)` in it, prints diagnostics if
/// the body failed or panicked, deletes the namespace and returns the body's result.
pub async fn with_namespace<F, Fut>(test: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let client = crate::client().await?;
    let name = unique_name(test);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
    }))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("failed to create namespace {name}"))?;
    println!("[{test}] namespace {name}");

    let outcome = tokio::spawn(body(client.clone(), name.clone())).await;
    let result = match outcome {
        Ok(result) => result,
        Err(join) if join.is_panic() => {
            let payload = join.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            Err(anyhow!("test panicked: {message}"))
        }
        Err(join) => Err(anyhow!("test task failed: {join}")),
    };

    if let Err(error) = &result {
        println!("[{test}] FAILED: {error:#}");
        println!("{}", diagnostics::namespace_report(&client, &name).await);
    }
    if std::env::var("E2E_KEEP_NAMESPACES").as_deref() == Ok("1") {
        println!("[{test}] keeping namespace {name} (E2E_KEEP_NAMESPACES=1)");
    } else if let Err(error) = namespaces.delete(&name, &DeleteParams::background()).await {
        // Not a test failure: run.sh deletes every namespace with the e2e label at the end.
        println!("[{test}] could not delete namespace {name}: {error}");
    }
    result
}
