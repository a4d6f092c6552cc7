//! 9. Deleting a SessionCluster removes everything it created: StatefulSet, both Services,
//!    ConfigMap, both Secrets, PodDisruptionBudget, ServiceAccount and the pods. Before that, each of
//!    those objects carries the contract's labels and a controller owner reference.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use e2e::namespace::with_namespace;
use e2e::{cluster, report, wait, Stopwatch};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};
use sessionstore_api::constants as c;
use sessionstore_api::names;

const TEST: &str = "deletion";
const NAME: &str = "doomed";

/// `kind/name` -> metadata of every child the contract names, `None` when absent.
async fn children(
    client: &Client,
    ns: &str,
) -> anyhow::Result<BTreeMap<String, Option<ObjectMeta>>> {
    let mut out = BTreeMap::new();
    macro_rules! get {
        ($kind:ty, $label:expr, $name:expr) => {{
            let api: Api<$kind> = Api::namespaced(client.clone(), ns);
            let name: String = $name;
            let meta = api.get_opt(&name).await?.map(|o| o.metadata);
            out.insert(format!("{}/{}", $label, name), meta);
        }};
    }
    get!(StatefulSet, "StatefulSet", names::statefulset(NAME));
    get!(Service, "Service", names::client_service(NAME));
    get!(Service, "Service", names::headless_service(NAME));
    get!(ConfigMap, "ConfigMap", names::config_map(NAME));
    get!(Secret, "Secret", names::auth_secret(NAME));
    get!(Secret, "Secret", names::node_auth_secret(NAME));
    get!(Secret, "Secret", names::peer_key_secret(NAME));
    get!(Secret, "Secret", names::operator_token_secret(NAME));
    get!(
        k8s_openapi::api::networking::v1::NetworkPolicy,
        "NetworkPolicy",
        names::network_policy(NAME)
    );
    get!(
        PodDisruptionBudget,
        "PodDisruptionBudget",
        names::pod_disruption_budget(NAME)
    );
    get!(
        ServiceAccount,
        "ServiceAccount",
        names::service_account(NAME)
    );
    Ok(out)
}

#[tokio::test]
#[ignore = "needs a cluster with the operator installed: e2e/run.sh"]
async fn deleting_the_cluster_removes_everything_it_created() -> anyhow::Result<()> {
    with_namespace(TEST, |client, ns| async move {
        let created = cluster::create(
            &client,
            &ns,
            &cluster::manifest(NAME, 1, serde_json::json!({}))?,
        )
        .await?;
        let uid = created.uid().context("created SessionCluster has no uid")?;
        let clock = Stopwatch::start();
        wait::cluster_ready(&client, &ns, NAME, 1, false, Duration::from_secs(180)).await?;
        report(TEST, format!("1 node Available after {clock}"));

        let present = children(&client, &ns).await?;
        for (object, meta) in &present {
            let meta = meta
                .as_ref()
                .with_context(|| format!("{object} was not created"))?;
            let labels = meta.labels.clone().unwrap_or_default();
            for (key, value) in [
                (c::LABEL_NAME, c::LABEL_NAME_VALUE),
                (c::LABEL_INSTANCE, NAME),
                (c::LABEL_MANAGED_BY, c::LABEL_MANAGED_BY_VALUE),
                (c::LABEL_COMPONENT, c::LABEL_COMPONENT_VALUE),
            ] {
                ensure!(
                    labels.get(key).map(String::as_str) == Some(value),
                    "{object}: label {key}={:?}, expected {value}",
                    labels.get(key)
                );
            }
            let owned = meta
                .owner_references
                .clone()
                .unwrap_or_default()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true) && o.kind == "SessionCluster");
            ensure!(
                owned,
                "{object} has no controller owner reference to SessionCluster {NAME}: {:?}",
                meta.owner_references
            );
        }
        let headless = Api::<Service>::namespaced(client.clone(), &ns)
            .get(&names::headless_service(NAME))
            .await?;
        ensure!(
            headless
                .spec
                .as_ref()
                .and_then(|s| s.publish_not_ready_addresses)
                == Some(true),
            "headless Service must publish not-ready addresses"
        );
        let client_service = Api::<Service>::namespaced(client.clone(), &ns)
            .get(&names::client_service(NAME))
            .await?;
        let ports: Vec<(Option<String>, i32)> = client_service
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .iter()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        ensure!(
            ports
                == [
                    (Some("resp".to_owned()), 6379),
                    (Some("http".to_owned()), 8080)
                ],
            "client Service ports {ports:?}"
        );
        let account = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get(&names::service_account(NAME))
            .await?;
        ensure!(
            account.automount_service_account_token == Some(false),
            "ServiceAccount automountServiceAccountToken {:?}",
            account.automount_service_account_token
        );
        report(
            TEST,
            format!(
                "{} children present with the contract labels and owner reference",
                present.len()
            ),
        );

        let clock = Stopwatch::start();
        cluster::api(&client, &ns)
            .delete(NAME, &DeleteParams::default())
            .await?;
        wait::until(
            &client,
            &ns,
            "every child and pod deleted",
            Duration::from_secs(120),
            || async {
                let left: Vec<String> = children(&client, &ns)
                    .await?
                    .into_iter()
                    .filter(|(_, m)| m.is_some())
                    .map(|(k, _)| k)
                    .collect();
                let pods = wait::cluster_pods(&client, &ns, NAME).await?.len();
                let gone = cluster::api(&client, &ns).get_opt(NAME).await?.is_none();
                Ok(if left.is_empty() && pods == 0 && gone {
                    Ok(())
                } else {
                    Err(format!(
                        "left: {left:?}, {pods} pods, SessionCluster gone {gone}"
                    ))
                })
            },
        )
        .await?;
        report(
            TEST,
            format!("SessionCluster, 7 children and the pod gone {clock} after the delete"),
        );
        Ok(())
    })
    .await
}
