//! Turns a SessionCluster into a [`ValidatedCluster`] with every default resolved and every
//! duration and quantity converted, or into a message the user can act on. Pure: no I/O.
//!
//! The CRD's schema and CEL rules refuse most bad specs at the API server; this repeats the
//! checks the operator relies on, with the same messages (`sessionstore_api::rules`), because a
//! CRD may be older than the operator, and adds the ones CEL cannot express (names, whole
//! seconds, a memory limit at all). It also says when a valid memory limit leaves a node too
//! little room above its high watermark (a warning, not a refusal).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use sessionstore_api::{names, rules};
use sessionstore_api::{
    EvictionPolicy, FsyncPolicy, RetentionSpec, SessionCluster, SessionClusterSpec, StorageMode,
    WriteAck,
};

/// Seconds the preStop hook waits so endpoints drop the pod before it gets SIGTERM.
pub const PRE_STOP_SECONDS: i64 = 5;
/// Margin between the node's own shutdown bound and the kubelet's SIGKILL.
pub const GRACE_MARGIN_SECONDS: i64 = 5;
/// Memory limit (and request) when `resources` is absent.
pub const DEFAULT_MEMORY: &str = "256Mi";
/// CPU request when `resources` is absent.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// What a node needs between its high watermark and its memory limit: room for what it does not
/// hold back for (serving a snapshot to a starting peer, replication and connection buffers, a
/// burst of large pipelined writes) before the kernel's OOM killer acts. Less is warned about.
pub const NODE_HEADROOM_BYTES: u64 = 24 << 20;

/// A spec the operator cannot carry out; the message is for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// Where the client password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSource {
    /// Secret name.
    pub secret: String,
    /// Key in the Secret.
    pub key: String,
    /// True when the operator generates and owns the Secret.
    pub generated: bool,
}

/// Where the node certificate comes from, when TLS is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSource {
    /// The Secret the pods mount (cert-manager's layout).
    pub secret: String,
    /// True when the operator issues and renews it (`<name>-tls`, signed by `<name>-ca`).
    pub generated: bool,
    /// Clients must present a certificate signed by the CA.
    pub client_auth: bool,
}

/// Whether `name` can be a named user: it becomes a directory name on the node and part of a
/// ConfigMap key.
fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Everything the builders need, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    /// SessionCluster name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Owner reference every child carries.
    pub owner: OwnerReference,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Desired nodes.
    pub replicas: i32,
    /// store-node image.
    pub image: String,
    /// Pull policy, when set.
    pub image_pull_policy: Option<String>,
    /// ram or disc.
    pub mode: StorageMode,
    /// Volume size in disc mode.
    pub volume_size: Option<Quantity>,
    /// Volume size in bytes in disc mode.
    pub volume_size_bytes: Option<u64>,
    /// StorageClass in disc mode.
    pub storage_class_name: Option<String>,
    /// fsync policy.
    pub fsync: FsyncPolicy,
    /// Claim retention.
    pub retention: RetentionSpec,
    /// `--default-session-timeout` seconds.
    pub default_session_timeout_secs: u64,
    /// `--max-session-timeout` seconds.
    pub max_session_timeout_secs: u64,
    /// `--expiry-sweep-interval-ms`.
    pub expiry_sweep_interval_ms: u64,
    /// Write acknowledgement.
    pub write_ack: WriteAck,
    /// High watermark fraction.
    pub high_watermark: f64,
    /// Low watermark fraction.
    pub low_watermark: f64,
    /// Eviction policy.
    pub eviction_policy: EvictionPolicy,
    /// `notify-keyspace-events` letters for the nodes; `None` when nothing is published.
    pub notify_keyspace_events: Option<String>,
    /// Container resources with defaults applied.
    pub resources: ResourceRequirements,
    /// `limits.memory` in bytes (store-node's `--max-memory`).
    pub memory_limit_bytes: u64,
    /// `--shutdown-timeout` seconds.
    pub shutdown_timeout_secs: u64,
    /// Password source, when auth is enabled.
    pub auth: Option<AuthSource>,
    /// Named users (empty without auth).
    pub users: Vec<sessionstore_api::UserSpec>,
    /// The node certificate, when TLS is enabled.
    pub tls: Option<TlsSource>,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.restartedAt`.
    pub restarted_at: Option<String>,
    /// `spec.progressDeadlineSeconds`.
    pub progress_deadline: Duration,
    /// The memory limit leaves less than [`NODE_HEADROOM_BYTES`] above the high watermark,
    /// explained with what to change; the spec is still carried out.
    pub headroom_warning: Option<String>,
    /// The spec, for the fields passed through to the pods as they are.
    pub spec: SessionClusterSpec,
}

impl ValidatedCluster {
    /// The pod's terminationGracePeriodSeconds: the preStop pause plus the node's own shutdown
    /// bound plus a margin, so the kubelet never kills a node that is still flushing.
    pub fn termination_grace_period_seconds(&self) -> i64 {
        PRE_STOP_SECONDS + self.shutdown_timeout_secs as i64 + GRACE_MARGIN_SECONDS
    }
}

/// Checks `cluster` and resolves its defaults. `default_image` is the operator's store-node image.
pub fn validate(
    cluster: &SessionCluster,
    default_image: &str,
) -> Result<ValidatedCluster, InvalidSpec> {
    let spec = &cluster.spec;
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    if name.is_empty() || namespace.is_empty() {
        return Err(InvalidSpec(
            "metadata.name and metadata.namespace are required".into(),
        ));
    }
    if name.len() > names::MAX_CLUSTER_NAME_LEN {
        return Err(InvalidSpec(format!(
            "metadata.name is {} characters long; at most {} fit the pod and volume names the StatefulSet derives from it: recreate the SessionCluster with a shorter name",
            name.len(),
            names::MAX_CLUSTER_NAME_LEN
        )));
    }
    let owner = cluster.controller_owner_ref(&()).ok_or_else(|| {
        InvalidSpec("metadata.uid is missing: the object was not read from the API server".into())
    })?;
    if spec.replicas < rules::MIN_REPLICAS {
        return Err(InvalidSpec(rules::REPLICAS_MIN_MESSAGE.into()));
    }
    if spec.replicas > rules::MAX_REPLICAS {
        return Err(InvalidSpec(rules::REPLICAS_MAX_MESSAGE.into()));
    }

    let default_session_timeout_secs =
        whole_seconds("sessions.defaultTimeout", &spec.sessions.default_timeout)?;
    let max_session_timeout_secs =
        whole_seconds("sessions.maxTimeout", &spec.sessions.max_timeout)?;
    if default_session_timeout_secs == 0 {
        return Err(InvalidSpec(rules::DEFAULT_TIMEOUT_MIN_MESSAGE.into()));
    }
    if max_session_timeout_secs < default_session_timeout_secs {
        return Err(InvalidSpec(rules::MAX_TIMEOUT_ORDER_MESSAGE.into()));
    }
    let sweep = parse_duration("sessions.cleanupInterval", &spec.sessions.cleanup_interval)?;
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&sweep) {
        return Err(InvalidSpec(rules::CLEANUP_INTERVAL_RANGE_MESSAGE.into()));
    }
    let expiry_sweep_interval_ms = sweep.as_millis() as u64;
    let shutdown_timeout_secs = whole_seconds("shutdownTimeout", &spec.shutdown_timeout)?;
    if !(1..=600).contains(&shutdown_timeout_secs) {
        return Err(InvalidSpec(rules::SHUTDOWN_TIMEOUT_RANGE_MESSAGE.into()));
    }
    parse_duration("monitoring.interval", &spec.monitoring.interval)?;
    if spec.progress_deadline_seconds < 10 {
        return Err(InvalidSpec(rules::PROGRESS_DEADLINE_MESSAGE.into()));
    }
    let progress_deadline =
        Duration::from_secs(spec.progress_deadline_seconds.unsigned_abs().into());

    let high = spec.memory.high_watermark;
    let low = spec.memory.low_watermark;
    // `contains` and `partial_cmp` so that NaN fails each check too.
    if !(f64::MIN_POSITIVE..=0.95).contains(&high) {
        return Err(InvalidSpec(rules::HIGH_WATERMARK_MESSAGE.into()));
    }
    if low.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(InvalidSpec(rules::LOW_WATERMARK_MESSAGE.into()));
    }
    if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
        return Err(InvalidSpec(rules::WATERMARK_ORDER_MESSAGE.into()));
    }

    let notify_keyspace_events = keyspace_events(spec.notify_keyspace_events.as_deref())?;

    let resources = resources_with_defaults(spec.resources.clone());
    let memory_limit = resources
        .limits
        .as_ref()
        .and_then(|limits| limits.get("memory"))
        .ok_or_else(|| {
            InvalidSpec(
                "spec.resources.limits.memory is required: it is the node's memory limit and the watermarks are fractions of it, e.g. limits: {memory: 256Mi}".into(),
            )
        })?;
    let memory_limit_bytes = quantity_bytes(memory_limit)
        .ok_or_else(|| InvalidSpec(rules::MEMORY_QUANTITY_MESSAGE.into()))?;
    if memory_limit_bytes < rules::MIN_MEMORY_BYTES {
        return Err(InvalidSpec(rules::MEMORY_FLOOR_MESSAGE.into()));
    }
    let headroom_warning = headroom_warning(&memory_limit.0, memory_limit_bytes, high);

    let (volume_size, volume_size_bytes) = match spec.storage.mode {
        StorageMode::Ram => (None, None),
        StorageMode::Disc => {
            let size = spec.storage.size.clone().ok_or_else(|| {
                InvalidSpec(
                    "spec.storage.size is required when spec.storage.mode is disc, e.g. size: 1Gi"
                        .into(),
                )
            })?;
            let bytes = quantity_bytes(&size).ok_or_else(|| {
                InvalidSpec(format!(
                    "spec.storage.size {:?} is not a quantity like 1Gi",
                    size.0
                ))
            })?;
            (Some(size), Some(bytes))
        }
    };

    let auth = if spec.auth.enabled {
        Some(match &spec.auth.secret_ref {
            Some(reference) => AuthSource {
                secret: reference.name.clone(),
                key: reference.key.clone(),
                generated: false,
            },
            None => AuthSource {
                secret: names::auth_secret(&name),
                key: sessionstore_api::constants::PASSWORD_KEY.to_owned(),
                generated: true,
            },
        })
    } else {
        None
    };
    let mut seen = std::collections::BTreeSet::new();
    for user in &spec.auth.users {
        if !spec.auth.enabled {
            return Err(InvalidSpec(format!(
                "auth.users names {} but auth.enabled is false: named users need authentication. Set auth.enabled: true or remove auth.users",
                user.name
            )));
        }
        if user.name == "default" {
            return Err(InvalidSpec("auth.users cannot name the user default: it is the password of auth.secretRef (plain AUTH <password>). Pick another name".into()));
        }
        if !valid_user_name(&user.name) {
            return Err(InvalidSpec(format!(
                "auth.users name {:?} is not a valid user name: use at most 63 letters, digits, '.', '_' or '-', not starting with '.'",
                user.name
            )));
        }
        if !seen.insert(user.name.as_str()) {
            return Err(InvalidSpec(format!(
                "auth.users names {} twice: each user appears once",
                user.name
            )));
        }
    }
    let tls = spec.tls.enabled.then(|| match &spec.tls.secret_ref {
        Some(reference) => TlsSource {
            secret: reference.name.clone(),
            generated: false,
            client_auth: spec.tls.client_auth,
        },
        None => TlsSource {
            secret: names::tls_secret(&name),
            generated: true,
            client_auth: spec.tls.client_auth,
        },
    });

    Ok(ValidatedCluster {
        owner,
        generation: cluster.metadata.generation,
        replicas: spec.replicas,
        image: spec
            .image
            .clone()
            .filter(|image| !image.is_empty())
            .unwrap_or_else(|| default_image.to_owned()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        mode: spec.storage.mode,
        volume_size,
        volume_size_bytes,
        storage_class_name: spec.storage.storage_class_name.clone(),
        fsync: spec.storage.fsync,
        retention: spec.storage.retention.clone(),
        default_session_timeout_secs,
        max_session_timeout_secs,
        expiry_sweep_interval_ms,
        write_ack: spec.replication.write_ack,
        high_watermark: high,
        low_watermark: low,
        eviction_policy: spec.memory.eviction_policy,
        notify_keyspace_events,
        resources,
        memory_limit_bytes,
        shutdown_timeout_secs,
        auth,
        users: if spec.auth.enabled {
            spec.auth.users.clone()
        } else {
            Vec::new()
        },
        tls,
        paused: spec.paused,
        restarted_at: spec.restarted_at.clone(),
        progress_deadline,
        headroom_warning,
        spec: spec.clone(),
        name,
        namespace,
    })
}

/// `spec.notifyKeyspaceEvents` checked by the CRD's two rules, the refusal naming the first
/// character that is not a class letter; `None` when empty or absent (nothing published).
fn keyspace_events(letters: Option<&str>) -> Result<Option<String>, InvalidSpec> {
    let Some(letters) = letters.filter(|letters| !letters.is_empty()) else {
        return Ok(None);
    };
    if let Some(bad) = letters
        .chars()
        .find(|letter| !rules::NOTIFY_KEYSPACE_EVENTS_LETTERS.contains(*letter))
    {
        return Err(InvalidSpec(format!(
            "notifyKeyspaceEvents {letters:?} has {bad:?}, which is not a class letter. {}",
            rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE
        )));
    }
    if !letters.contains(['K', 'E']) {
        return Err(InvalidSpec(
            rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE.into(),
        ));
    }
    Ok(Some(letters.to_owned()))
}

fn resources_with_defaults(resources: Option<ResourceRequirements>) -> ResourceRequirements {
    match resources {
        Some(resources) => resources,
        None => ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(DEFAULT_CPU_REQUEST.into())),
                ("memory".to_owned(), Quantity(DEFAULT_MEMORY.into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity(DEFAULT_MEMORY.into()),
            )])),
            ..ResourceRequirements::default()
        },
    }
}

/// The warning for a memory limit of `limit_bytes` (written `limit`) whose high watermark
/// `high` leaves less than [`NODE_HEADROOM_BYTES`] above it: by how much, and the smallest limit
/// or the largest watermark that would do.
fn headroom_warning(limit: &str, limit_bytes: u64, high: f64) -> Option<String> {
    const MIB: f64 = 1024.0 * 1024.0;
    let headroom = limit_bytes as f64 * (1.0 - high);
    let needed = NODE_HEADROOM_BYTES as f64;
    if headroom >= needed {
        return None;
    }
    // Less a hair: 24Mi at 0.8 is exactly 120Mi, which float division puts a little above.
    let smallest_limit_mib = (needed / (1.0 - high) / MIB - 1e-6).ceil();
    let largest_high = ((limit_bytes as f64 - needed) / limit_bytes as f64 * 100.0).floor() / 100.0;
    let instead = if largest_high >= 0.05 {
        format!(" or lower memory.highWatermark to {largest_high}")
    } else {
        String::new()
    };
    Some(format!(
        "resources.limits.memory {limit} with memory.highWatermark {high} leaves {:.1}Mi above the high watermark, and a node needs about {}Mi there (serving a snapshot to a starting peer, replication and connection buffers, bursts of large writes): the kernel may kill it before it refuses writes. Raise the limit to at least {smallest_limit_mib}Mi{instead}",
        headroom / MIB,
        NODE_HEADROOM_BYTES >> 20
    ))
}

fn parse_duration(field: &str, value: &str) -> Result<Duration, InvalidSpec> {
    // kube's parser is Go's, which also takes a sign, `us` and `ns`; the CRD takes none.
    let parsed = kube::core::Duration::from_str(value)
        .ok()
        .filter(|parsed| is_crd_duration(value) && !parsed.is_negative())
        .ok_or_else(|| InvalidSpec(rules::duration_message(field)))?;
    Ok(parsed.into())
}

/// Whether `text` matches [`rules::DURATION_REGEX`]: one or more `<digits>[.<digits>]<unit>`
/// with unit `ms`, `s`, `m` or `h`.
fn is_crd_duration(text: &str) -> bool {
    fn digits(text: &str) -> usize {
        text.bytes().take_while(u8::is_ascii_digit).count()
    }
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let whole = digits(rest);
        if whole == 0 {
            return false;
        }
        rest = &rest[whole..];
        if let Some(after_point) = rest.strip_prefix('.') {
            let fraction = digits(after_point);
            if fraction == 0 {
                return false;
            }
            rest = &after_point[fraction..];
        }
        rest = match rest.strip_prefix("ms") {
            Some(after) => after,
            None => match rest.strip_prefix(['s', 'm', 'h']) {
                Some(after) => after,
                None => return false,
            },
        };
    }
    true
}

fn whole_seconds(field: &str, value: &str) -> Result<u64, InvalidSpec> {
    let duration = parse_duration(field, value)?;
    if duration.subsec_nanos() != 0 {
        return Err(InvalidSpec(format!(
            "{field} {value:?} must be a whole number of seconds, e.g. 90s rather than 1.5m"
        )));
    }
    Ok(duration.as_secs())
}

/// Bytes in a Kubernetes quantity (`256Mi`, `1G`, `1.5Gi`, `1e9`, `1073741824`), rounded up;
/// `None` when it is not one, or is negative.
pub fn quantity_bytes(quantity: &Quantity) -> Option<u64> {
    let text = quantity.0.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            10f64.powi(exponent[1..].parse::<i32>().ok()?)
        }
        _ => return None,
    };
    let bytes = (number * multiplier).ceil();
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A SessionCluster as the API server would return it, from a JSON spec.
    pub(crate) fn cluster(name: &str, spec: serde_json::Value) -> SessionCluster {
        let object = serde_json::json!({
            "apiVersion": "sessionstore.dev/v1alpha1",
            "kind": "SessionCluster",
            "metadata": {"name": name, "namespace": "apps", "uid": "uid-1", "generation": 1},
            "spec": spec,
        });
        match serde_json::from_value(object) {
            Ok(cluster) => cluster,
            Err(error) => panic!("test spec does not parse: {error}"),
        }
    }

    fn invalid(spec: serde_json::Value) -> String {
        match validate(&cluster("demo", spec), "img") {
            Ok(_) => "valid".into(),
            Err(InvalidSpec(message)) => message,
        }
    }

    #[test]
    fn defaults_resolve() -> Result<(), InvalidSpec> {
        let v = validate(
            &cluster("demo", serde_json::json!({})),
            "sessionstore/store-node:0.1.0",
        )?;
        assert_eq!(v.replicas, 3);
        assert_eq!(v.image, "sessionstore/store-node:0.1.0");
        assert_eq!(v.default_session_timeout_secs, 1800);
        assert_eq!(v.max_session_timeout_secs, 86400);
        assert_eq!(v.expiry_sweep_interval_ms, 100);
        assert_eq!(v.memory_limit_bytes, 256 * 1024 * 1024);
        assert_eq!(v.shutdown_timeout_secs, 20);
        assert_eq!(v.termination_grace_period_seconds(), 30);
        assert_eq!(
            v.auth,
            Some(AuthSource {
                secret: "demo-auth".into(),
                key: "password".into(),
                generated: true
            })
        );
        assert_eq!(v.owner.uid, "uid-1");
        assert_eq!(v.owner.controller, Some(true));
        Ok(())
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(invalid(serde_json::json!({"storage": {"mode": "disc"}}))
            .contains("spec.storage.size is required"));
        assert!(
            invalid(serde_json::json!({"sessions": {"defaultTimeout": "1500ms"}}))
                .contains("whole number of seconds")
        );
        assert!(
            invalid(serde_json::json!({"resources": {"requests": {"cpu": "1"}}}))
                .contains("limits.memory is required")
        );
        let long = "a".repeat(53);
        assert!(matches!(
            validate(&cluster(&long, serde_json::json!({})), "img"),
            Err(InvalidSpec(message)) if message.contains("shorter name")
        ));
    }

    #[test]
    fn named_users_and_tls_resolve_or_are_refused_with_what_to_do() -> Result<(), InvalidSpec> {
        let user = |name: &str| serde_json::json!({"name": name, "secretRef": {"name": "s"}});
        assert_eq!(
            invalid(serde_json::json!({"auth": {"users": [user("default")]}})),
            "auth.users cannot name the user default: it is the password of auth.secretRef (plain AUTH <password>). Pick another name"
        );
        assert_eq!(
            invalid(serde_json::json!({"auth": {"users": [user("a b")]}})),
            "auth.users name \"a b\" is not a valid user name: use at most 63 letters, digits, '.', '_' or '-', not starting with '.'"
        );
        assert_eq!(
            invalid(serde_json::json!({"auth": {"users": [user("ro"), user("ro")]}})),
            "auth.users names ro twice: each user appears once"
        );
        assert_eq!(
            invalid(serde_json::json!({"auth": {"enabled": false, "users": [user("ro")]}})),
            "auth.users names ro but auth.enabled is false: named users need authentication. Set auth.enabled: true or remove auth.users"
        );
        let v = validate(
            &cluster(
                "demo",
                serde_json::json!({"auth": {"users": [user("reader")]}, "tls": {"enabled": true}}),
            ),
            "img",
        )?;
        assert_eq!(v.users.len(), 1);
        assert_eq!(
            v.tls,
            Some(TlsSource {
                secret: "demo-tls".into(),
                generated: true,
                client_auth: false
            })
        );
        let mine = validate(
            &cluster(
                "demo",
                serde_json::json!({"tls": {"enabled": true, "secretRef": {"name": "cm-cert"}, "clientAuth": true}}),
            ),
            "img",
        )?;
        assert_eq!(
            mine.tls,
            Some(TlsSource {
                secret: "cm-cert".into(),
                generated: false,
                client_auth: true
            })
        );
        assert_eq!(
            validate(&cluster("demo", serde_json::json!({})), "img")?.tls,
            None
        );
        Ok(())
    }

    /// The operator refuses what the CRD's CEL rules refuse, with the same message, for a CRD
    /// older than the operator.
    #[test]
    fn what_the_crd_refuses_the_operator_refuses_with_the_same_words() {
        let limit = |memory: &str| serde_json::json!({"resources": {"limits": {"memory": memory}}});
        let memory = |high: f64, low: f64| serde_json::json!({"memory": {"highWatermark": high, "lowWatermark": low}});
        let cases = [
            (
                serde_json::json!({"replicas": 0}),
                rules::REPLICAS_MIN_MESSAGE,
            ),
            (
                serde_json::json!({"replicas": 1000}),
                rules::REPLICAS_MAX_MESSAGE,
            ),
            (limit("1Ki"), rules::MEMORY_FLOOR_MESSAGE),
            (limit("63Mi"), rules::MEMORY_FLOOR_MESSAGE),
            (limit("lots"), rules::MEMORY_QUANTITY_MESSAGE),
            (memory(1.5, 0.7), rules::HIGH_WATERMARK_MESSAGE),
            (memory(0.0, 0.7), rules::HIGH_WATERMARK_MESSAGE),
            (memory(0.8, 0.0), rules::LOW_WATERMARK_MESSAGE),
            (memory(0.6, 0.7), rules::WATERMARK_ORDER_MESSAGE),
            (
                serde_json::json!({"sessions": {"defaultTimeout": "soon"}}),
                rules::DEFAULT_TIMEOUT_DURATION_MESSAGE,
            ),
            (
                serde_json::json!({"sessions": {"defaultTimeout": "-5m"}}),
                rules::DEFAULT_TIMEOUT_DURATION_MESSAGE,
            ),
            (
                serde_json::json!({"sessions": {"maxTimeout": "1d"}}),
                rules::MAX_TIMEOUT_DURATION_MESSAGE,
            ),
            (
                serde_json::json!({"sessions": {"defaultTimeout": "0s"}}),
                rules::DEFAULT_TIMEOUT_MIN_MESSAGE,
            ),
            (
                serde_json::json!({"sessions": {"defaultTimeout": "2h", "maxTimeout": "1h"}}),
                rules::MAX_TIMEOUT_ORDER_MESSAGE,
            ),
            (
                serde_json::json!({"sessions": {"cleanupInterval": "5ms"}}),
                rules::CLEANUP_INTERVAL_RANGE_MESSAGE,
            ),
            (
                serde_json::json!({"sessions": {"cleanupInterval": "100us"}}),
                rules::CLEANUP_INTERVAL_DURATION_MESSAGE,
            ),
            (
                serde_json::json!({"shutdownTimeout": "11m"}),
                rules::SHUTDOWN_TIMEOUT_RANGE_MESSAGE,
            ),
            (
                serde_json::json!({"shutdownTimeout": "20"}),
                rules::SHUTDOWN_TIMEOUT_DURATION_MESSAGE,
            ),
            (
                serde_json::json!({"monitoring": {"interval": "often"}}),
                rules::MONITORING_INTERVAL_DURATION_MESSAGE,
            ),
            (
                serde_json::json!({"progressDeadlineSeconds": 9}),
                rules::PROGRESS_DEADLINE_MESSAGE,
            ),
        ];
        for (spec, message) in cases {
            assert_eq!(invalid(spec.clone()), message, "{spec}");
        }
    }

    /// A bad `notifyKeyspaceEvents` is refused naming the character at fault and the letters
    /// to use; classes without a channel are refused as the CRD does; valid letters pass as
    /// written, empty means none.
    #[test]
    fn keyspace_events_are_refused_naming_the_bad_letter() -> Result<(), InvalidSpec> {
        assert_eq!(
            invalid(serde_json::json!({"notifyKeyspaceEvents": "Egq"})),
            format!(
                "notifyKeyspaceEvents \"Egq\" has 'q', which is not a class letter. {}",
                rules::NOTIFY_KEYSPACE_EVENTS_MESSAGE
            )
        );
        assert_eq!(
            invalid(serde_json::json!({"notifyKeyspaceEvents": "gx"})),
            rules::NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE
        );
        let letters = |spec| -> Result<Option<String>, InvalidSpec> {
            Ok(validate(&cluster("demo", spec), "img")?.notify_keyspace_events)
        };
        assert_eq!(
            letters(serde_json::json!({"notifyKeyspaceEvents": "Egx"}))?,
            Some("Egx".to_owned())
        );
        assert_eq!(
            letters(serde_json::json!({"notifyKeyspaceEvents": "KEA$n"}))?,
            Some("KEA$n".to_owned())
        );
        assert_eq!(
            letters(serde_json::json!({"notifyKeyspaceEvents": ""}))?,
            None
        );
        assert_eq!(letters(serde_json::json!({}))?, None);
        Ok(())
    }

    #[test]
    fn durations_take_the_crd_spelling_only() {
        for good in ["30m", "1h30m", "45s", "100ms", "1.5h", "2h0m0s", "10ms"] {
            assert!(is_crd_duration(good), "{good}");
        }
        for bad in [
            "", "5", "m", "1.s", ".5s", "-1s", "+1s", "100us", "1d", "1h 30m", "1H",
        ] {
            assert!(!is_crd_duration(bad), "{bad}");
        }
    }

    #[test]
    fn a_limit_with_little_room_above_the_high_watermark_is_warned_about() -> Result<(), InvalidSpec>
    {
        let warning = |spec: serde_json::Value| -> Result<Option<String>, InvalidSpec> {
            Ok(validate(&cluster("demo", spec), "img")?.headroom_warning)
        };
        assert_eq!(warning(serde_json::json!({}))?, None, "256Mi at 0.8");
        assert_eq!(
            warning(serde_json::json!({"resources": {"limits": {"memory": "128Mi"}}}))?,
            None,
            "25.6Mi is enough"
        );
        assert_eq!(
            warning(serde_json::json!({"resources": {"limits": {"memory": "64Mi"}}}))?
                .as_deref(),
            Some("resources.limits.memory 64Mi with memory.highWatermark 0.8 leaves 12.8Mi above the high watermark, and a node needs about 24Mi there (serving a snapshot to a starting peer, replication and connection buffers, bursts of large writes): the kernel may kill it before it refuses writes. Raise the limit to at least 120Mi or lower memory.highWatermark to 0.62")
        );
        assert_eq!(
            warning(
                serde_json::json!({"resources": {"limits": {"memory": "64Mi"}},
                "memory": {"highWatermark": 0.6, "lowWatermark": 0.5}})
            )?,
            None
        );
        Ok(())
    }

    #[test]
    fn quantities_convert_to_bytes() {
        let bytes = |text: &str| quantity_bytes(&Quantity(text.into()));
        assert_eq!(bytes("256Mi"), Some(268_435_456));
        assert_eq!(bytes("1Gi"), Some(1_073_741_824));
        assert_eq!(bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("512"), Some(512));
        assert_eq!(bytes("12Xi"), None);
    }
}
