//! The StatefulSet of store-node pods: the wiring of docs/contract.md (envFrom the ConfigMap,
//! `CLUSTER_SERVICE_NAME` from the same naming code as the headless Service, the downward API),
//! probes, graceful shutdown, volumes and a hardened security context.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, SleepAction, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sessionstore_api::constants::{
    ANNOTATION_AUTH_REVISION, ANNOTATION_CONFIG_HASH, ANNOTATION_RESTARTED_AT, HTTP_PORT,
    HTTP_PORT_NAME, PEER_PORT_NAME, RESP_PORT, RESP_PORT_NAME,
};
use sessionstore_api::names;
use sessionstore_api::StorageMode;

use super::meta::{child_meta, labels_with};
use crate::validate::{ValidatedCluster, PRE_STOP_SECONDS};

/// The uid/gid store-node runs as (the distroless `nonroot` user).
pub const NODE_USER: i64 = 65532;

/// What the StatefulSet depends on besides the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct StatefulSetInputs {
    /// Replicas to ask for; during a scale-down this stays above the spec until nodes left.
    pub replicas: i32,
    /// [`super::config_map::config_hash`] of the ConfigMap.
    pub config_hash: String,
    /// [`super::secret::auth_revision`] of the mounted password, when auth is enabled.
    pub auth_revision: Option<String>,
    /// Size in the volumeClaimTemplate. A StatefulSet's claim templates are immutable, so once
    /// it exists this is the size it was created with; growth is done by patching the claims.
    pub claim_size: Option<Quantity>,
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A probe on the HTTP port; `scheme` is `HTTPS` with TLS (the kubelet does not verify the
/// certificate, and the node asks probes for no client certificate).
fn http_probe(scheme: &str, path: &str, period: i32, failures: i32, timeout: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(HTTP_PORT_NAME.to_owned()),
            scheme: Some(scheme.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(timeout),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// Spread nodes over hosts when the user gave no affinity: every node holds every session, so
/// two on one host lose twice as much redundancy when that host goes.
fn default_affinity(cluster: &ValidatedCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names::selector_labels(&cluster.name)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The StatefulSet `<name>`.
pub fn build_statefulset(cluster: &ValidatedCluster, inputs: &StatefulSetInputs) -> StatefulSet {
    let spec = &cluster.spec;
    let mut annotations = spec.pod_annotations.clone().unwrap_or_default();
    annotations.insert(
        ANNOTATION_CONFIG_HASH.to_owned(),
        inputs.config_hash.clone(),
    );
    if let Some(auth_revision) = &inputs.auth_revision {
        annotations.insert(ANNOTATION_AUTH_REVISION.to_owned(), auth_revision.clone());
    }
    if let Some(restarted_at) = &cluster.restarted_at {
        annotations.insert(ANNOTATION_RESTARTED_AT.to_owned(), restarted_at.clone());
    }

    let mut volume_mounts = vec![
        VolumeMount {
            name: names::DATA_VOLUME.to_owned(),
            mount_path: names::DATA_DIR.to_owned(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if cluster.mode == StorageMode::Ram {
        volumes.push(Volume {
            name: names::DATA_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    let (mounts, secret_volumes) = super::secret_volumes::secret_volumes(cluster);
    volume_mounts.extend(mounts);
    volumes.extend(secret_volumes);
    let scheme = if cluster.tls.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };

    let container = Container {
        name: names::CONTAINER_NAME.to_owned(),
        image: Some(cluster.image.clone()),
        image_pull_policy: cluster.image_pull_policy.clone(),
        ports: Some(vec![
            container_port(RESP_PORT_NAME, RESP_PORT),
            container_port(HTTP_PORT_NAME, HTTP_PORT),
            container_port(PEER_PORT_NAME, names::peer_port()),
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: names::config_map(&cluster.name),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
            EnvVar {
                name: "CLUSTER_SERVICE_NAME".to_owned(),
                value: Some(names::cluster_service_name(&cluster.name)),
                ..EnvVar::default()
            },
        ]),
        // Ready means synced with the peers (503 while loading or leaving).
        readiness_probe: Some(http_probe(scheme, "/readyz", 5, 3, 2)),
        // Liveness is process health only; a long bootstrap must not get the node killed.
        liveness_probe: Some(http_probe(scheme, "/healthz", 10, 6, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(cluster.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(NODE_USER),
            run_as_group: Some(NODE_USER),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };

    let volume_claim_templates = (cluster.mode == StorageMode::Disc).then(|| {
        let size = inputs
            .claim_size
            .clone()
            .or_else(|| cluster.volume_size.clone());
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(names::DATA_VOLUME.to_owned()),
                labels: Some(names::labels(&cluster.name)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: cluster.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: size.map(|size| BTreeMap::from([("storage".to_owned(), size)])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }]
    });
    let retention = (cluster.mode == StorageMode::Disc).then(|| {
        StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_scaled: Some(cluster.retention.when_scaled.as_str().to_owned()),
            when_deleted: Some(cluster.retention.when_deleted.as_str().to_owned()),
        }
    });

    StatefulSet {
        metadata: child_meta(cluster, names::statefulset(&cluster.name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(inputs.replicas),
            service_name: Some(names::headless_service(&cluster.name)),
            // Nodes bootstrap from any ready peer, so there is no reason to start them one by
            // one; a full restart of a disc cluster must not wait for pod 0 to be ready alone.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(names::selector_labels(&cluster.name)),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: retention,
            volume_claim_templates,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels_with(cluster, spec.pod_labels.as_ref())),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::service_account(&cluster.name)),
                    automount_service_account_token: Some(false),
                    // Service links would inject `<SERVICE>_PORT`-style variables next to the
                    // node's own STORE_NODE_* settings; the node needs none of them.
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(
                        cluster.termination_grace_period_seconds(),
                    ),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NODE_USER),
                        run_as_group: Some(NODE_USER),
                        fs_group: Some(NODE_USER),
                        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    affinity: Some(
                        spec.affinity
                            .clone()
                            .unwrap_or_else(|| default_affinity(cluster)),
                    ),
                    tolerations: spec.tolerations.clone(),
                    node_selector: spec.node_selector.clone(),
                    topology_spread_constraints: spec.topology_spread_constraints.clone(),
                    priority_class_name: spec.priority_class_name.clone(),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    fn inputs() -> StatefulSetInputs {
        StatefulSetInputs {
            replicas: 3,
            config_hash: "abc".into(),
            auth_revision: Some("def".into()),
            claim_size: None,
        }
    }

    fn template_annotations(statefulset: &StatefulSet) -> BTreeMap<String, String> {
        statefulset
            .spec
            .clone()
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .unwrap_or_default()
    }

    #[test]
    fn the_password_revision_is_a_pod_template_annotation() {
        let cluster = validated(serde_json::json!({}));
        let sts = build_statefulset(&cluster, &inputs());
        assert_eq!(
            template_annotations(&sts),
            BTreeMap::from([
                (
                    "sessionstore.dev/auth-revision".to_owned(),
                    "def".to_owned()
                ),
                ("sessionstore.dev/config-hash".to_owned(), "abc".to_owned()),
            ])
        );
        let without_auth = build_statefulset(
            &validated(serde_json::json!({"auth": {"enabled": false}})),
            &StatefulSetInputs {
                auth_revision: None,
                ..inputs()
            },
        );
        assert_eq!(
            template_annotations(&without_auth).get("sessionstore.dev/auth-revision"),
            None
        );
    }

    fn pod_spec(statefulset: &StatefulSet) -> PodSpec {
        statefulset
            .spec
            .clone()
            .and_then(|s| s.template.spec)
            .unwrap_or_default()
    }

    #[test]
    fn ram_cluster_statefulset() {
        let sts = build_statefulset(&validated(serde_json::json!({})), &inputs());
        let spec = sts.spec.clone().unwrap_or_default();
        assert_eq!(sts.metadata.name.as_deref(), Some("demo"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("apps"));
        let owner = &sts.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("SessionCluster", "demo", Some(true))
        );
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("demo-headless"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.volume_claim_templates, None);
        assert_eq!(spec.persistent_volume_claim_retention_policy, None);
        assert_eq!(
            spec.selector.match_labels,
            Some(names::selector_labels("demo"))
        );
        let annotations = spec
            .template
            .metadata
            .clone()
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            annotations,
            BTreeMap::from([
                (ANNOTATION_AUTH_REVISION.to_owned(), "def".to_owned()),
                (ANNOTATION_CONFIG_HASH.to_owned(), "abc".to_owned())
            ])
        );

        let pod = pod_spec(&sts);
        assert_eq!(pod.service_account_name.as_deref(), Some("demo-node"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.enable_service_links, Some(false));
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let pod_security = pod.security_context.clone().unwrap_or_default();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.fs_group, Some(65532));
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("sessionstore/store-node:0.1.0")
        );
        assert_eq!(container.args, None);
        let env: Vec<(String, Option<String>, Option<String>)> = container
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let field = e.value_from.and_then(|v| v.field_ref).map(|f| f.field_path);
                (e.name, e.value, field)
            })
            .collect();
        assert_eq!(
            env,
            vec![
                ("POD_NAME".into(), None, Some("metadata.name".into())),
                (
                    "POD_NAMESPACE".into(),
                    None,
                    Some("metadata.namespace".into())
                ),
                ("POD_IP".into(), None, Some("status.podIP".into())),
                (
                    "CLUSTER_SERVICE_NAME".into(),
                    Some("demo-headless".into()),
                    None
                ),
            ]
        );
        assert_eq!(
            container.env_from.clone().unwrap_or_default()[0]
                .config_map_ref
                .as_ref()
                .map(|c| c.name.clone()),
            Some("demo-config".to_owned())
        );
        let ports: Vec<(Option<String>, i32)> = container
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.container_port))
            .collect();
        assert_eq!(
            ports,
            vec![
                (Some("resp".into()), 6379),
                (Some("http".into()), 8080),
                (Some("peer".into()), 7379)
            ]
        );
        assert_eq!(
            container.readiness_probe,
            Some(http_probe("HTTP", "/readyz", 5, 3, 2))
        );
        assert_eq!(
            container.liveness_probe,
            Some(http_probe("HTTP", "/healthz", 10, 6, 3))
        );
        assert_eq!(
            container
                .lifecycle
                .clone()
                .and_then(|l| l.pre_stop)
                .and_then(|p| p.sleep)
                .map(|s| s.seconds),
            Some(5)
        );
        let security = container.security_context.clone().unwrap_or_default();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(
            security.seccomp_profile.map(|s| s.type_),
            Some("RuntimeDefault".to_owned())
        );
        let volumes: Vec<(String, bool, Option<String>)> = pod
            .volumes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                (
                    v.name,
                    v.empty_dir.is_some(),
                    v.secret.and_then(|s| s.secret_name),
                )
            })
            .collect();
        assert_eq!(
            volumes,
            vec![
                ("tmp".into(), true, None),
                ("data".into(), true, None),
                ("auth".into(), false, Some("demo-node-auth".into())),
                ("peer-key".into(), false, Some("demo-peer-key".into())),
                (
                    "operator-token".into(),
                    false,
                    Some("demo-operator-token".into())
                ),
            ]
        );
        let limits = container
            .resources
            .clone()
            .and_then(|r| r.limits)
            .unwrap_or_default();
        assert_eq!(limits.get("memory"), Some(&Quantity("256Mi".into())));
    }

    #[test]
    fn disc_cluster_has_claims_and_retention() {
        let cluster = validated(serde_json::json!({
            "storage": {"mode": "disc", "size": "2Gi", "storageClassName": "fast",
                        "retention": {"whenScaled": "Delete"}},
            "restartedAt": "2026-01-01T00:00:00Z",
            "auth": {"secretRef": {"name": "mine", "key": "pw"}}
        }));
        let sts = build_statefulset(&cluster, &inputs());
        let spec = sts.spec.clone().unwrap_or_default();
        let claims = spec.volume_claim_templates.clone().unwrap_or_default();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let claim_spec = claims[0].spec.clone().unwrap_or_default();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec
                .resources
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned()),
            Some(Quantity("2Gi".into()))
        );
        let retention = spec
            .persistent_volume_claim_retention_policy
            .clone()
            .unwrap_or_default();
        assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        let pod = pod_spec(&sts);
        let names: Vec<String> = pod
            .volumes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(
            names,
            vec![
                "tmp".to_owned(),
                "auth".to_owned(),
                "peer-key".to_owned(),
                "operator-token".to_owned()
            ]
        );
        let auth = pod.volumes.unwrap_or_default()[1]
            .secret
            .clone()
            .unwrap_or_default();
        assert_eq!(auth.secret_name.as_deref(), Some("demo-node-auth"));
        assert_eq!(auth.items.unwrap_or_default()[0].key, "password");
        let annotations = spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            annotations.get(ANNOTATION_RESTARTED_AT).map(String::as_str),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn tls_mounts_the_certificate_secret_and_probes_over_https() {
        let sts = build_statefulset(
            &validated(
                serde_json::json!({"tls": {"enabled": true, "secretRef": {"name": "cm-cert"}}}),
            ),
            &inputs(),
        );
        let pod = pod_spec(&sts);
        let tls = pod
            .volumes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "tls")
            .and_then(|v| v.secret)
            .unwrap_or_default();
        assert_eq!(tls.secret_name.as_deref(), Some("cm-cert"));
        let keys: Vec<String> = tls
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(keys, ["tls.crt", "tls.key", "ca.crt"]);
        let container = &pod.containers[0];
        assert_eq!(
            container.readiness_probe,
            Some(http_probe("HTTPS", "/readyz", 5, 3, 2))
        );
        assert_eq!(
            container.liveness_probe,
            Some(http_probe("HTTPS", "/healthz", 10, 6, 3))
        );
        let mounts: Vec<(String, String)> = container
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.name, m.mount_path))
            .collect();
        assert!(mounts.contains(&("tls".into(), "/etc/sessionstore/tls".into())));
    }

    #[test]
    fn existing_claim_size_is_kept_in_the_template() {
        let cluster = validated(serde_json::json!({"storage": {"mode": "disc", "size": "5Gi"}}));
        let sts = build_statefulset(
            &cluster,
            &StatefulSetInputs {
                claim_size: Some(Quantity("2Gi".into())),
                ..inputs()
            },
        );
        let claims = sts
            .spec
            .and_then(|s| s.volume_claim_templates)
            .unwrap_or_default();
        assert_eq!(
            claims[0]
                .spec
                .clone()
                .and_then(|s| s.resources)
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned()),
            Some(Quantity("2Gi".into()))
        );
    }

    #[test]
    fn user_affinity_replaces_the_default_spread() {
        let default = pod_spec(&build_statefulset(
            &validated(serde_json::json!({})),
            &inputs(),
        ));
        assert!(default.affinity.and_then(|a| a.pod_anti_affinity).is_some());
        let custom = pod_spec(&build_statefulset(
            &validated(
                serde_json::json!({"affinity": {"nodeAffinity": {}}, "podLabels": {"team": "web", "app.kubernetes.io/name": "x"}}),
            ),
            &inputs(),
        ));
        assert!(custom
            .affinity
            .clone()
            .and_then(|a| a.pod_anti_affinity)
            .is_none());
        assert!(custom.affinity.and_then(|a| a.node_affinity).is_some());
    }
}
