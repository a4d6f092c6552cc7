//! A reconcile step for the Prometheus Operator's objects: a ServiceMonitor and a PrometheusRule
//! while `monitoring.enabled` and their CRDs are installed (one Warning event per cluster when
//! they are not), deleted once after monitoring is disabled.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::ResourceExt;
use sessionstore_api::SessionCluster;

use super::context::{key, Context};
use super::error::Error;
use crate::apply::{Applier, ApplyError};
use crate::resources;
use crate::validate::ValidatedCluster;

async fn crd_exists(ctx: &Context, name: &str) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

/// ServiceMonitor and PrometheusRule when `monitoring.enabled` and their CRDs exist; their
/// removal when it is not.
pub(super) async fn apply(
    cluster: &SessionCluster,
    ctx: &Context,
    applier: &Applier,
    validated: &ValidatedCluster,
) -> Result<(), Error> {
    let objects = [
        (
            "servicemonitors.monitoring.coreos.com",
            resources::service_monitor_resource(),
            resources::build_service_monitor(validated),
        ),
        (
            "prometheusrules.monitoring.coreos.com",
            resources::prometheus_rule_resource(),
            resources::build_prometheus_rule(validated),
        ),
    ];
    if !validated.spec.monitoring.enabled {
        // Delete what an earlier `enabled: true` made, once per disable (and once per cluster
        // after the operator starts), not on every poll: two reads per cluster and minute for
        // objects that almost never exist.
        let first = ctx
            .monitoring_cleaned
            .lock()
            .map(|mut cleaned| cleaned.insert(key(cluster)))
            .unwrap_or(true);
        if first {
            for (_, resource, object) in &objects {
                let name = object.name_any();
                match applier
                    .delete_owned_dynamic(&name, &validated.owner.uid, resource)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(cluster = %key(cluster), kind = %resource.kind, "deleted; monitoring disabled")
                    }
                    Ok(false) => {}
                    // Without the CRD the kind does not exist: nothing to delete.
                    Err(ApplyError::Read {
                        source: kube::Error::Api(status),
                        ..
                    }) if status.code == 404 => {}
                    Err(error) => {
                        if let Ok(mut cleaned) = ctx.monitoring_cleaned.lock() {
                            cleaned.remove(&key(cluster));
                        }
                        return Err(error.into());
                    }
                }
            }
        }
        return Ok(());
    }
    if let Ok(mut cleaned) = ctx.monitoring_cleaned.lock() {
        cleaned.remove(&key(cluster));
    }
    let mut missing = Vec::new();
    for (crd, resource, object) in objects {
        if crd_exists(ctx, crd).await {
            applier.apply_dynamic(&object, &resource).await?;
        } else {
            let first = ctx
                .monitoring_warned
                .lock()
                .map(|mut warned| warned.insert(format!("{}/{crd}", key(cluster))))
                .unwrap_or(false);
            if first {
                missing.push(crd);
            }
        }
    }
    // One event: the recorder folds events of the same reason into one series that keeps the
    // first note, so a second event would lose its CRD's name.
    if !missing.is_empty() {
        ctx.publish(
            cluster,
            true,
            "MonitoringUnavailable",
            format!(
                "monitoring.enabled is true but {} not installed; install the Prometheus Operator or set monitoring.enabled: false",
                match missing.as_slice() {
                    [one] => format!("the CRD {one} is"),
                    more => format!("the CRDs {} are", more.join(" and ")),
                }
            ),
        )
        .await;
    }
    Ok(())
}
