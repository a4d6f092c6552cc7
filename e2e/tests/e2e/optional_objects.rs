//! 11. The optional objects on a real cluster: `monitoring.enabled` makes a ServiceMonitor and a
//!     PrometheusRule only once the Prometheus Operator's CRDs exist (before that, one Warning
//!     `MonitoringUnavailable` naming them), and removes them when disabled; `networkPolicy.enabled`
//!     makes the NetworkPolicy and removes it when disabled. The test installs minimal
//!     monitoring.coreos.com CRDs when the cluster has none, and deletes them again at the end.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use e2e::namespace::with_namespace;
use e2e::{cluster, diagnostics, report, wait, Stopwatch};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client, ResourceExt};
use sessionstore_api::constants::LABEL_INSTANCE;
use sessionstore_api::names;

const TEST: &str = "optional-objects";
const NAME: &str = "watched";
/// `(plural, kind)` of the two Prometheus Operator kinds the operator creates.
const KINDS: [(&str, &str); 2] = [
    ("servicemonitors", "ServiceMonitor"),
    ("prometheusrules", "PrometheusRule"),
];

fn crd_name(plural: &str) -> String {
    format!("{plural}.monitoring.coreos.com")
}

/// A minimal CRD for a monitoring.coreos.com kind: served v1, any content kept.
fn minimal_crd(plural: &str, kind: &str) -> anyhow::Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name(plural), "labels": {"sessionstore.dev/e2e": "true"}},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))?)
}

fn monitoring_api(client: &Client, ns: &str, plural: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind),
        plural,
    );
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Installs the `missing` CRDs and waits until they are served.
async fn install_crds(client: &Client, ns: &str, missing: &[(&str, &str)]) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (plural, kind) in missing {
        match crds
            .create(&PostParams::default(), &minimal_crd(plural, kind)?)
            .await
        {
            Ok(_) => {}
            // Another run made it meanwhile.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                return Err(error).with_context(|| format!("creating CRD {}", crd_name(plural)))
            }
        }
    }
    for (plural, kind) in missing {
        let api = monitoring_api(client, ns, plural, kind);
        wait::until(
            client,
            ns,
            &format!("{} served", crd_name(plural)),
            Duration::from_secs(60),
            || async {
                Ok(match api.list(&Default::default()).await {
                    Ok(_) => Ok(()),
                    Err(error) => Err(error.to_string()),
                })
            },
        )
        .await?;
    }
    Ok(())
}

async fn body(
    client: Client,
    ns: String,
    missing: Vec<(&'static str, &'static str)>,
) -> anyhow::Result<()> {
    let clock = Stopwatch::start();
    let spec =
        serde_json::json!({"monitoring": {"enabled": true}, "networkPolicy": {"enabled": true}});
    let created = cluster::create(&client, &ns, &cluster::manifest(NAME, 1, spec)?).await?;
    let uid = created.uid().context("created SessionCluster has no uid")?;
    wait::cluster_ready(&client, &ns, NAME, 1, true, Duration::from_secs(180)).await?;
    report(
        TEST,
        format!("1 node with monitoring and networkPolicy enabled Available after {clock}"),
    );

    if missing.len() == KINDS.len() {
        let events = diagnostics::cluster_events(&client, &ns, NAME).await?;
        let warning = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("MonitoringUnavailable"))
            .context("no MonitoringUnavailable event while the monitoring CRDs are missing")?;
        let message = warning.message.clone().unwrap_or_default();
        report(
            TEST,
            format!("without the CRDs: {}", diagnostics::event_line(warning)),
        );
        ensure!(
            warning.type_.as_deref() == Some("Warning"),
            "{}",
            diagnostics::event_line(warning)
        );
        ensure!(
            message == "monitoring.enabled is true but the CRDs servicemonitors.monitoring.coreos.com and prometheusrules.monitoring.coreos.com are not installed; install the Prometheus Operator or set monitoring.enabled: false",
            "event message: {message}"
        );
    }
    install_crds(&client, &ns, &missing).await?;

    // A spec change reconciles at once (the operator does not watch CRDs).
    let clock = Stopwatch::start();
    cluster::patch_spec(
        &client,
        &ns,
        NAME,
        serde_json::json!({"monitoring": {"interval": "15s"}}),
    )
    .await?;
    let monitors = monitoring_api(&client, &ns, "servicemonitors", "ServiceMonitor");
    let rules = monitoring_api(&client, &ns, "prometheusrules", "PrometheusRule");
    let (monitor, rule) = wait::until(
        &client,
        &ns,
        "ServiceMonitor and PrometheusRule",
        Duration::from_secs(60),
        || async {
            let monitor = monitors.get_opt(&names::monitoring(NAME)).await?;
            let rule = rules.get_opt(&names::monitoring(NAME)).await?;
            Ok(match (monitor, rule) {
                (Some(monitor), Some(rule))
                    if monitor.data["spec"]["endpoints"][0]["interval"] == "15s" =>
                {
                    Ok((monitor, rule))
                }
                (monitor, rule) => Err(format!(
                    "ServiceMonitor {:?}, PrometheusRule present {}",
                    monitor.map(|m| m.data),
                    rule.is_some()
                )),
            })
        },
    )
    .await?;
    report(
        TEST,
        format!("ServiceMonitor and PrometheusRule applied {clock} after the spec change"),
    );
    for object in [&monitor, &rule] {
        ensure!(
            object
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true)),
            "{} has no controller owner reference to the SessionCluster",
            object.name_any()
        );
    }
    ensure!(
        monitor.data["spec"]["endpoints"][0]["port"] == "http",
        "ServiceMonitor endpoints {}",
        monitor.data["spec"]["endpoints"]
    );
    ensure!(
        monitor.data["spec"]["selector"]["matchLabels"][names::LABEL_SERVICE_ROLE] == "client",
        "ServiceMonitor selector {}",
        monitor.data["spec"]["selector"]
    );
    let alerts: Vec<&str> = rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .map(|rules| rules.iter().filter_map(|r| r["alert"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        alerts == ["SessionStoreMemoryHigh", "SessionStoreMemoryCritical"],
        "alerts {alerts:?}"
    );

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = policies
        .get(&names::network_policy(NAME))
        .await
        .context("NetworkPolicy")?;
    let spec = policy.spec.clone().unwrap_or_default();
    let ports: Vec<Vec<String>> = spec
        .ingress
        .unwrap_or_default()
        .iter()
        .map(|rule| {
            rule.ports
                .iter()
                .flatten()
                .filter_map(|p| p.port.as_ref())
                .map(|p| format!("{p:?}"))
                .collect()
        })
        .collect();
    ensure!(
        ports == [["Int(7379)"], ["Int(6379)"], ["Int(8080)"]],
        "NetworkPolicy ingress ports {ports:?}"
    );
    let selected = spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    ensure!(
        selected.get(LABEL_INSTANCE).map(String::as_str) == Some(NAME) && selected.len() == 2,
        "NetworkPolicy selects {selected:?}"
    );
    report(
        TEST,
        "NetworkPolicy: peer port from the cluster's pods, RESP and HTTP ports open",
    );

    // With allowedClients: RESP from them only; HTTP also from the operator's namespace and the
    // monitoring namespace (docs/security.md).
    cluster::patch_spec(
        &client,
        &ns,
        NAME,
        serde_json::json!({"networkPolicy": {"allowedClients": [
            {"podSelector": {"matchLabels": {"app": "web"}}}]}}),
    )
    .await?;
    let namespace_of = |peer: &k8s_openapi::api::networking::v1::NetworkPolicyPeer| {
        peer.namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("kubernetes.io/metadata.name").cloned())
            .unwrap_or_else(|| "pods app=web".to_owned())
    };
    let froms = wait::until(
        &client,
        &ns,
        "the NetworkPolicy admits allowedClients",
        Duration::from_secs(30),
        || async {
            let policy = policies.get(&names::network_policy(NAME)).await?;
            let rules = policy.spec.and_then(|s| s.ingress).unwrap_or_default();
            let froms: Vec<Vec<String>> = rules
                .iter()
                .map(|rule| rule.from.iter().flatten().map(namespace_of).collect())
                .collect();
            if froms.get(1).is_some_and(|from| from == &["pods app=web"]) {
                Ok(Ok(froms))
            } else {
                Ok(Err(format!("ingress from {froms:?}")))
            }
        },
    )
    .await?;
    ensure!(
        froms
            .get(2)
            .is_some_and(|from| from == &["pods app=web", "sessionstore-system", "monitoring"]),
        "HTTP admitted from {froms:?}"
    );
    report(
        TEST,
        format!(
            "NetworkPolicy with allowedClients: RESP from {:?}, HTTP from {:?}",
            froms[1], froms[2]
        ),
    );

    let clock = Stopwatch::start();
    cluster::patch_spec(
        &client,
        &ns,
        NAME,
        serde_json::json!({"monitoring": {"enabled": false}, "networkPolicy": {"enabled": false}}),
    )
    .await?;
    wait::until(
        &client,
        &ns,
        "ServiceMonitor, PrometheusRule and NetworkPolicy deleted",
        Duration::from_secs(60),
        || async {
            let left = [
                (
                    "ServiceMonitor",
                    monitors.get_opt(&names::monitoring(NAME)).await?.is_some(),
                ),
                (
                    "PrometheusRule",
                    rules.get_opt(&names::monitoring(NAME)).await?.is_some(),
                ),
                (
                    "NetworkPolicy",
                    policies
                        .get_opt(&names::network_policy(NAME))
                        .await?
                        .is_some(),
                ),
            ];
            let left: Vec<&str> = left
                .iter()
                .filter(|(_, present)| *present)
                .map(|(kind, _)| *kind)
                .collect();
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still there: {left:?}"))
            })
        },
    )
    .await?;
    report(
        TEST,
        format!("disabled: all three deleted {clock} after the spec change"),
    );
    wait::cluster_ready(&client, &ns, NAME, 1, true, Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn monitoring_and_network_policy_objects_follow_the_spec() -> anyhow::Result<()> {
    let client = e2e::client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for (plural, kind) in KINDS {
        if crds.get_opt(&crd_name(plural)).await?.is_none() {
            missing.push((plural, kind));
        }
    }
    report(
        TEST,
        format!("monitoring CRDs missing before the test: {missing:?}"),
    );
    let result = with_namespace(TEST, {
        let missing = missing.clone();
        |client, ns| body(client, ns, missing)
    })
    .await;
    // Leave the cluster as found: the CRDs this test installed go again.
    for (plural, _) in &missing {
        if let Err(error) = crds
            .delete(&crd_name(plural), &DeleteParams::default())
            .await
        {
            println!(
                "[{TEST}] could not delete CRD {}: {error}",
                crd_name(plural)
            );
        }
    }
    result
}
