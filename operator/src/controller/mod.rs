//! The SessionCluster controller. A reconcile is a list of steps, each in its own file, in this
//! order:
//!
//! 1. `admit`: a deleted cluster is left to the garbage collector; the spec is validated (pure,
//!    `crate::validate`), and an invalid or paused one is only reported.
//! 2. `inputs`: the live StatefulSet and pods are dereferenced.
//! 3. `refusals`: the spec is checked against the live StatefulSet (pure).
//! 4. `children`: the objects around the StatefulSet are built (pure, `crate::resources`) and
//!    applied (`crate::apply`, the only writer); what someone changed in them is set back.
//! 5. `keys`: the generated peer key and operator token (`<name>-peer-key`,
//!    `<name>-operator-token`); `tls`: the node certificate (issued and renewed when the
//!    operator generates it, checked either way); `auth`: the passwords the nodes accept, from the auth Secret,
//!    now that a generated one exists (a new password rolls out next to the previous one).
//! 6. `scale_down`: leaving nodes hand off before the StatefulSet is lowered.
//! 7. `statefulset`: built and applied.
//! 8. `volumes`: disc-mode claims grown.
//! 9. `monitoring`: ServiceMonitor and PrometheusRule applied or removed.
//! 10. `members`: the nodes' `/v1/status` polled.
//! 11. `inputs` again: why pods stuck in creation are stuck (their events).
//! 12. `report`: the status computed (pure, `crate::status`) and written, with events.
//! 13. `requeue`: when to look again; `member_watch` polls the nodes meanwhile.
//!
//! This file wires them: [`reconcile`], [`error_policy`] and [`run`], one kube-runtime
//! `Controller` per watched namespace (or one for all). `context` holds what reconciles share,
//! `watches` maps watched objects to their cluster.

mod admit;
mod auth;
mod children;
mod context;
mod error;
mod inputs;
mod keys;
mod member_watch;
mod members;
mod monitoring;
mod refusals;
mod report;
mod requeue;
mod scale_down;
mod statefulset;
mod tls;
mod volumes;
mod watches;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Client, Resource};
use sessionstore_api::{names, SessionCluster};

use crate::status;

pub use context::{Context, ControllerConfig, REPORTER};
pub use error::Error;
pub use member_watch::{fingerprint, near_high_watermark, MemberWatch};
pub use report::status_merge_patch;
pub use requeue::requeue_delay;
pub use watches::{cluster_of_pod, clusters_using_secret, watched_secret_selector, WATCH_LABEL};

use crate::apply::Applier;
use crate::resources::StatefulSetInputs;
use crate::status::pods::PodView;
use context::key;
use inputs::Live;

/// Reconciles one SessionCluster.
pub async fn reconcile(cluster: Arc<SessionCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_steps(&cluster, &ctx).await;
    ctx.metrics.observe(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    match &result {
        Ok(_) => {
            if let Ok(mut failures) = ctx.failures.lock() {
                failures.remove(&key(&cluster));
            }
        }
        Err(error) if error.namespace_gone() => {
            tracing::debug!(cluster = %key(&cluster), %error, "namespace is being deleted");
            return Ok(Action::await_change());
        }
        Err(error) => report::failure(&ctx, &cluster, error).await,
    }
    result
}

/// The steps of one reconcile, in order (see the module documentation).
async fn reconcile_steps(cluster: &SessionCluster, ctx: &Context) -> Result<Action, Error> {
    let old = cluster.status.clone().unwrap_or_default();
    let Some(validated) = admit::admit(cluster, ctx, &old).await? else {
        return Ok(Action::await_change());
    };
    let applier = Applier::new(ctx.client.clone(), &validated.namespace);
    let live = Live::read(ctx, &applier, &validated).await?;
    let mut refusal = refusals::refusal(&validated, &live);
    let children = children::apply(
        &applier,
        &validated,
        &ctx.config.operator_namespace,
        &ctx.config.random_source,
    )
    .await?;
    for (reason, note) in &children.notices {
        ctx.publish(cluster, true, reason, note.clone()).await;
    }
    let keys = keys::reconcile(&applier, &validated, &ctx.config.random_source).await?;
    let tls = tls::reconcile(cluster, ctx, &applier, &validated).await?;
    let auth = auth::reconcile(
        cluster,
        ctx,
        &applier,
        &validated,
        &live,
        children.created_auth_secret,
    )
    .await?;
    let replicas = scale_down::replicas(
        cluster,
        ctx,
        &validated,
        &live,
        &old,
        keys.operator_token.as_deref(),
        tls.client.as_ref(),
    )
    .await?;
    let statefulset_inputs = StatefulSetInputs {
        replicas: replicas.statefulset,
        config_hash: children.config_hash,
        auth_revision: auth.revision.clone(),
        claim_size: live.claim_size(),
    };
    let mut wrote = children.wrote;
    if statefulset::apply(
        cluster,
        ctx,
        &applier,
        &validated,
        &refusal,
        &statefulset_inputs,
    )
    .await?
    {
        wrote.push("StatefulSet");
    }
    volumes::expand(cluster, ctx, &validated, &live, &mut refusal).await?;
    monitoring::apply(cluster, ctx, &applier, &validated).await?;
    if !wrote.is_empty() {
        tracing::info!(cluster = %key(cluster), objects = ?wrote, "applied");
    }
    let polled = members::poll(
        ctx,
        &validated,
        &live.pods,
        replicas.statefulset,
        tls.client.as_ref(),
    )
    .await;
    let pods: Vec<PodView> = live
        .pods
        .iter()
        .map(|pod| PodView::from_pod(&validated.name, pod))
        .collect();
    let sandbox_failures = inputs::sandbox_failures(ctx, &validated.namespace, &live.pods).await;
    report::oom_kills(ctx, cluster, &pods).await;
    let observed = report::observed(
        &validated,
        &live,
        &pods,
        replicas,
        polled.nodes.clone(),
        refusal,
        children
            .problem
            .clone()
            .or(keys.problem)
            .or(tls.problem)
            .or(auth.problem),
        tls.status,
        &sandbox_failures,
    );
    let new = report::write_observed(ctx, cluster, &old, &observed).await?;
    let wrote_statefulset = wrote.contains(&"StatefulSet");
    let changing = wrote_statefulset
        || observed.ready < observed.desired
        || observed.replicas != observed.desired
        || status::condition_status(
            &new.conditions,
            sessionstore_api::constants::condition::PROGRESSING,
        ) == Some("True")
        || !status::members_synced(&new, validated.replicas);
    ctx.member_watch
        .record(cluster, polled.addresses, &polled.nodes, changing);
    Ok(requeue::next(
        ctx,
        cluster,
        &new,
        validated.replicas,
        wrote_statefulset,
    ))
}

/// Backoff after a failed reconcile: 5s doubling per consecutive failure, at most 5 minutes.
pub fn error_policy(cluster: Arc<SessionCluster>, _error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = match ctx.failures.lock() {
        Ok(mut failures) => {
            let count = failures.entry(key(&cluster)).or_insert(0);
            *count = count.saturating_add(1);
            *count
        }
        Err(_) => 1,
    };
    let seconds = 5u64
        .saturating_mul(1 << attempts.min(6).saturating_sub(1))
        .min(300);
    Action::requeue(Duration::from_secs(seconds))
}

/// What the controller reports after each reconcile it scheduled.
pub type Outcome = Result<
    (ObjectRef<SessionCluster>, Action),
    kube::runtime::controller::Error<Error, watcher::Error>,
>;

/// Acts on a controller outcome. Without a finalizer a deletion is never reconciled; it shows as
/// a reconcile of a cluster that is no longer there (its requeue, or its children and pods being
/// garbage collected), which is when the operator forgets the cluster's gauges and counters.
pub fn handle_outcome(ctx: &Context, outcome: Outcome) {
    match outcome {
        Ok(_) => {}
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            if let Some(namespace) = &object.namespace {
                tracing::debug!(cluster = %format!("{namespace}/{}", object.name), "deleted; forgetting it");
                ctx.forget(namespace, &object.name);
            }
        }
        Err(error) => tracing::debug!(%error, "controller event"),
    }
}

/// Runs the controller until `shutdown` completes. `namespaces` empty means all namespaces.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let watch_ctx = ctx.clone();
    let watch_shutdown = shutdown.clone();
    let member_watch = tokio::spawn(async move {
        watch_ctx
            .member_watch
            .run(watch_ctx.node_api.as_ref(), watch_shutdown)
            .await;
    });
    let runs = scopes.into_iter().map(|namespace| {
        let ctx = ctx.clone();
        let client = ctx.client.clone();
        let shutdown = shutdown.clone();
        let node_changes = ctx.member_watch.subscribe(namespace.clone());
        async move {
            fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
            where
                K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
            {
                match namespace {
                    Some(ns) => Api::namespaced(client.clone(), ns),
                    None => Api::all(client.clone()),
                }
            }
            let owned = watcher::Config::default().labels(&names::managed_selector());
            let pods = watcher::Config::default().labels(&names::pod_watch_selector());
            // Metadata only, by label: the operator's own Secrets and those the user labelled;
            // no Secret's data is cached (docs/security.md).
            let owned_secrets = watcher(
                api::<PartialObjectMeta<Secret>>(&client, &namespace),
                watcher::Config::default().labels(&names::managed_selector()),
            )
            .touched_objects();
            let labelled_secrets = watcher(
                api::<PartialObjectMeta<Secret>>(&client, &namespace),
                watcher::Config::default().labels(&watched_secret_selector()),
            )
            .touched_objects();
            let controller = Controller::new(
                api::<SessionCluster>(&client, &namespace),
                watcher::Config::default(),
            );
            let clusters = controller.store();
            let labelled_clusters = clusters.clone();
            controller
                .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
                .owns(api::<Service>(&client, &namespace), owned.clone())
                .owns(api::<ConfigMap>(&client, &namespace), owned.clone())
                .watches_stream(owned_secrets, move |secret| {
                    secret_clusters(&clusters.state(), &secret)
                })
                .watches_stream(labelled_secrets, move |secret| {
                    secret_clusters(&labelled_clusters.state(), &secret)
                })
                .owns(api::<ServiceAccount>(&client, &namespace), owned.clone())
                .owns(
                    api::<PodDisruptionBudget>(&client, &namespace),
                    owned.clone(),
                )
                .owns(api::<NetworkPolicy>(&client, &namespace), owned)
                .watches(api::<Pod>(&client, &namespace), pods, |pod| {
                    cluster_of_pod(&pod)
                })
                .reconcile_on(tokio_stream_of(node_changes))
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|outcome| {
                    handle_outcome(&ctx, outcome);
                    std::future::ready(())
                })
                .await;
        }
    });
    futures::future::join_all(runs).await;
    let _ = member_watch.await;
}

/// The clusters a watched Secret's metadata maps to.
fn secret_clusters(
    clusters: &[Arc<SessionCluster>],
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<SessionCluster>> {
    match (&secret.metadata.namespace, &secret.metadata.name) {
        (Some(namespace), Some(name)) => clusters_using_secret(clusters, namespace, name),
        _ => Vec::new(),
    }
}

/// The receiver as a stream, for `Controller::reconcile_on`.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}
