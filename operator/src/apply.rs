//! The only place that writes child objects. Server-side apply under one field manager, skipped
//! when the object already holds every field we would set (so a steady cluster costs reads,
//! never writes), create-once for the generated password, deletes of what the spec no longer
//! asks for, and removal of ConfigMap keys the operator does not set. An apply that sets back
//! fields someone else changed (their `managedFields` entry owns them) says which, so the
//! operator can tell the user what it reverted.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sessionstore_api::constants::FIELD_MANAGER;

/// A failed write or the read before it, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the current object failed.
    #[error("failed to read {kind} {name}: {source}")]
    Read {
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// The server-side apply failed.
    #[error("failed to apply {kind} {name}: {source}")]
    Apply {
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Creating the object failed.
    #[error("failed to create {kind} {name}: {source}")]
    Create {
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Deleting the object failed.
    #[error("failed to delete {kind} {name}: {source}")]
    Delete {
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// The object could not be turned into JSON.
    #[error("failed to serialize {kind} {name}: {source}")]
    Serialize {
        /// Object kind.
        kind: String,
        /// Object name.
        name: String,
        /// serde error.
        source: serde_json::Error,
    },
}

/// True when every field set in `desired` has the same value in `actual` (extra fields in
/// `actual`, like defaults the API server filled in, are fine). Lists must have the same
/// length and match element by element.
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Null, _) => true,
        (Value::Object(desired), Value::Object(actual)) => desired.iter().all(|(key, value)| {
            value.is_null() || actual.get(key).is_some_and(|a| is_subset(value, a))
        }),
        (Value::Object(desired), Value::Null) => desired.values().all(Value::is_null),
        (Value::Array(desired), Value::Array(actual)) => {
            desired.len() == actual.len()
                && desired.iter().zip(actual).all(|(d, a)| is_subset(d, a))
        }
        (Value::Number(desired), Value::Number(actual)) => desired.as_f64() == actual.as_f64(),
        // The API server stores quantities in canonical form (`1000m` comes back as `1`,
        // `0.5Gi` as `512Mi`), so equal amounts in different spellings are the same value.
        (Value::String(desired), Value::String(actual)) => {
            desired == actual
                || quantity_nanos(desired).is_some_and(|d| quantity_nanos(actual) == Some(d))
        }
        (desired, actual) => desired == actual,
    }
}

/// The exact value of a Kubernetes quantity (`100m`, `1`, `1.5Gi`, `1e3`, `512Mi`) in billionths
/// of its unit; `None` when the text is not a quantity or is not a whole number of billionths.
pub fn quantity_nanos(text: &str) -> Option<i128> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return None;
    }
    let parse = |digits: &str| -> Option<i128> {
        if digits.is_empty() {
            Some(0)
        } else {
            digits.parse().ok()
        }
    };
    let scale = 10i128.checked_pow(9 - u32::try_from(fraction.len()).ok()?)?;
    let mut nanos = parse(whole)?
        .checked_mul(1_000_000_000)?
        .checked_add(parse(fraction)?.checked_mul(scale)?)?;
    let (binary_power, decimal_power): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        exponent if exponent.starts_with(['e', 'E']) => (0, exponent[1..].parse().ok()?),
        _ => return None,
    };
    nanos = nanos.checked_mul(1i128.checked_shl(binary_power)?)?;
    if decimal_power >= 0 {
        nanos = nanos.checked_mul(10i128.checked_pow(decimal_power.unsigned_abs())?)?;
    } else {
        let divisor = 10i128.checked_pow(decimal_power.unsigned_abs())?;
        if nanos % divisor != 0 {
            return None;
        }
        nanos /= divisor;
    }
    Some(if negative { -nanos } else { nanos })
}

/// The path of the first field where `desired` is not a subset of `actual` (as [`is_subset`]
/// decides), for the log line that says why an object is rewritten.
pub fn first_difference(desired: &Value, actual: &Value) -> Option<String> {
    match (desired, actual) {
        (Value::Object(desired), Value::Object(actual)) => {
            desired
                .iter()
                .find_map(|(key, value)| match actual.get(key) {
                    _ if value.is_null() => None,
                    None => Some(key.clone()),
                    Some(a) => first_difference(value, a).map(|rest| {
                        if rest.is_empty() {
                            key.clone()
                        } else {
                            format!("{key}.{rest}")
                        }
                    }),
                })
        }
        (Value::Array(d), Value::Array(a)) if d.len() == a.len() => {
            d.iter().zip(a).enumerate().find_map(|(index, (d, a))| {
                first_difference(d, a).map(|rest| format!("[{index}].{rest}"))
            })
        }
        _ => (!is_subset(desired, actual)).then(String::new),
    }
}

/// Whether a `fieldsV1` node stands for the field itself rather than for fields inside it.
fn is_leaf(fields: &Value) -> bool {
    fields
        .as_object()
        .is_none_or(|children| children.keys().all(|key| key == "."))
}

/// The element of list `items` that a `fieldsV1` key `k:{...}` (the list's merge keys) or
/// `v:...` (a set member) names, with its label for a path.
fn list_item<'a>(items: &'a Value, key: &str) -> Option<(&'a Value, String)> {
    let items = items.as_array()?;
    if let Some(keys) = key.strip_prefix("k:") {
        let keys: serde_json::Map<String, Value> = serde_json::from_str(keys).ok()?;
        let label = keys
            .iter()
            .map(|(k, v)| match v {
                Value::String(text) => format!("{k}={text}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        let item = items
            .iter()
            .find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)))?;
        return Some((item, format!("[{label}]")));
    }
    let member: Value = serde_json::from_str(key.strip_prefix("v:")?).ok()?;
    let item = items.iter().find(|item| **item == member)?;
    Some((item, format!("[{member}]")))
}

/// The fields in `fields` (one manager's `fieldsV1`) that `desired` sets to something other
/// than what `live` holds, as paths like `spec.replicas` or
/// `spec.template.spec.containers[name=store-node].image`: what another manager changed among
/// the fields the operator owns, which a forced apply sets back.
pub fn changed_fields(fields: &Value, desired: &Value, live: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk_fields(fields, desired, live, "", &mut found);
    found
}

fn walk_fields(fields: &Value, desired: &Value, live: &Value, path: &str, found: &mut Vec<String>) {
    let Some(children) = fields.as_object() else {
        return;
    };
    for (key, child) in children {
        let (desired_child, live_child, label) = if let Some(name) = key.strip_prefix("f:") {
            let Some(desired_child) = desired.get(name).filter(|v| !v.is_null()) else {
                continue;
            };
            let label = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            (desired_child, live.get(name).unwrap_or(&Value::Null), label)
        } else {
            let Some((desired_child, label)) = list_item(desired, key) else {
                continue;
            };
            let live_child = list_item(live, key).map_or(&Value::Null, |(item, _)| item);
            (desired_child, live_child, format!("{path}{label}"))
        };
        if is_leaf(child) {
            if !is_subset(desired_child, live_child) {
                found.push(label);
            }
        } else {
            walk_fields(child, desired_child, live_child, &label, found);
        }
    }
}

/// What [`Applier::apply_reporting`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether it wrote.
    pub wrote: bool,
    /// Fields another manager had changed that the apply set back, as `path (by manager)`.
    pub reverted: Vec<String>,
}

fn without_status(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.remove("status");
    }
    value
}

/// Writes child objects of one namespace.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    namespace: String,
}

impl Applier {
    /// An applier for `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
        }
    }

    /// Applies `desired` unless the live object already matches. Returns whether it wrote.
    pub async fn apply<K>(&self, desired: &K) -> Result<bool, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        Ok(self.apply_reporting(desired).await?.wrote)
    }

    /// [`Self::apply`], also naming the fields another manager (`kubectl scale`, `kubectl
    /// edit`, another tool) had changed and the apply sets back. Fields the operator does not
    /// set are theirs and stay.
    pub async fn apply_reporting<K>(&self, desired: &K) -> Result<Applied, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let kind = K::kind(&()).to_string();
        let name = desired.name_any();
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|source| ApplyError::Read {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })?;
        let serialize = |value: &K| {
            serde_json::to_value(value).map_err(|source| ApplyError::Serialize {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })
        };
        let mut reverted = Vec::new();
        if let Some(existing) = &existing {
            let desired_value = without_status(serialize(desired)?);
            let existing_value = serialize(existing)?;
            if is_subset(&desired_value, &existing_value) {
                return Ok(Applied::default());
            }
            tracing::debug!(
                kind = %kind,
                name = %name,
                field = first_difference(&desired_value, &existing_value).unwrap_or_default(),
                "live object differs"
            );
            for entry in existing.managed_fields() {
                let manager = entry.manager.as_deref().unwrap_or("an unnamed manager");
                // Status is the StatefulSet controller's, and never ours.
                if manager == FIELD_MANAGER || entry.subresource.as_deref() == Some("status") {
                    continue;
                }
                let Some(fields) = &entry.fields_v1 else {
                    continue;
                };
                reverted.extend(
                    changed_fields(&fields.0, &desired_value, &existing_value)
                        .into_iter()
                        .map(|path| format!("{path} (by {manager})")),
                );
            }
        }
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map_err(|source| ApplyError::Apply { kind, name, source })?;
        Ok(Applied {
            wrote: true,
            reverted,
        })
    }

    /// Removes from ConfigMap `name` every `data` key not in `keep`: keys someone added (the
    /// nodes read the whole ConfigMap as their environment), and keys the operator set before
    /// and no longer does (an apply that finds every desired key in place does not run, so it
    /// does not drop them). Returns the keys someone else added.
    pub async fn remove_extra_keys(
        &self,
        name: &str,
        keep: &[&str],
    ) -> Result<Vec<String>, ApplyError> {
        let Some(existing) = self.get::<ConfigMap>(name).await? else {
            return Ok(Vec::new());
        };
        let extra = |keys: Option<Vec<&String>>| -> serde_json::Map<String, Value> {
            keys.into_iter()
                .flatten()
                .filter(|key| !keep.contains(&key.as_str()))
                .map(|key| (key.clone(), Value::Null))
                .collect()
        };
        let data = extra(existing.data.as_ref().map(|d| d.keys().collect()));
        let binary = extra(existing.binary_data.as_ref().map(|d| d.keys().collect()));
        let removed: Vec<String> = data.keys().chain(binary.keys()).cloned().collect();
        if removed.is_empty() {
            return Ok(removed);
        }
        let ours: Vec<&String> = existing
            .managed_fields()
            .iter()
            .filter(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
            .filter_map(|entry| entry.fields_v1.as_ref())
            .flat_map(|fields| {
                ["f:data", "f:binaryData"]
                    .into_iter()
                    .filter_map(|map| fields.0.get(map)?.as_object())
                    .flat_map(|keys| keys.keys())
                    .collect::<Vec<_>>()
            })
            .collect();
        let added: Vec<String> = removed
            .iter()
            .filter(|key| {
                !ours
                    .iter()
                    .any(|owned| owned.strip_prefix("f:") == Some(key.as_str()))
            })
            .cloned()
            .collect();
        let mut patch = serde_json::Map::new();
        if !data.is_empty() {
            patch.insert("data".to_owned(), Value::Object(data));
        }
        if !binary.is_empty() {
            patch.insert("binaryData".to_owned(), Value::Object(binary));
        }
        // A merge patch may remove keys another manager owns, which an apply cannot.
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(Value::Object(patch)),
        )
        .await
        .map_err(|source| ApplyError::Apply {
            kind: "ConfigMap".to_owned(),
            name: name.to_owned(),
            source,
        })?;
        Ok(added)
    }

    /// Applies a dynamic object (ServiceMonitor, PrometheusRule) unless it already matches.
    pub async fn apply_dynamic(
        &self,
        desired: &DynamicObject,
        resource: &ApiResource,
    ) -> Result<bool, ApplyError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, resource);
        let kind = resource.kind.clone();
        let name = desired.name_any();
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|source| ApplyError::Read {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })?;
        if let Some(existing) = &existing {
            let desired_value = serde_json::to_value(desired);
            let existing_value = serde_json::to_value(existing);
            if let (Ok(d), Ok(e)) = (desired_value, existing_value) {
                if is_subset(&d, &e) {
                    return Ok(false);
                }
            }
        }
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map_err(|source| ApplyError::Apply { kind, name, source })?;
        Ok(true)
    }

    /// Creates `desired` when no object of that name exists; never touches an existing one.
    pub async fn create_if_absent<K>(&self, desired: &K) -> Result<bool, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let kind = K::kind(&()).to_string();
        let name = desired.name_any();
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|source| ApplyError::Read {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })?;
        if existing.is_some() {
            return Ok(false);
        }
        match api.create(&PostParams::default(), desired).await {
            Ok(_) => Ok(true),
            // Someone (another operator replica before losing its lease) created it meanwhile.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(ApplyError::Create { kind, name, source }),
        }
    }

    /// Reads an object, if it exists.
    pub async fn get<K>(&self, name: &str) -> Result<Option<K>, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(name).await.map_err(|source| ApplyError::Read {
            kind: K::kind(&()).to_string(),
            name: name.to_owned(),
            source,
        })
    }

    /// Deletes `name` if it exists and is owned by the SessionCluster `owner_uid`.
    pub async fn delete_owned<K>(&self, name: &str, owner_uid: &str) -> Result<bool, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        let Some(existing) = self.get::<K>(name).await? else {
            return Ok(false);
        };
        if !existing
            .owner_references()
            .iter()
            .any(|o| o.uid == owner_uid)
        {
            return Ok(false);
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(source) => Err(ApplyError::Delete {
                kind: K::kind(&()).to_string(),
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Deletes a dynamic object if it exists and is owned by `owner_uid`.
    pub async fn delete_owned_dynamic(
        &self,
        name: &str,
        owner_uid: &str,
        resource: &ApiResource,
    ) -> Result<bool, ApplyError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, resource);
        let existing = api.get_opt(name).await.map_err(|source| ApplyError::Read {
            kind: resource.kind.clone(),
            name: name.to_owned(),
            source,
        })?;
        let Some(existing) = existing else {
            return Ok(false);
        };
        if !existing
            .owner_references()
            .iter()
            .any(|o| o.uid == owner_uid)
        {
            return Ok(false);
        }
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(source) => Err(ApplyError::Delete {
                kind: resource.kind.clone(),
                name: name.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_defaults_but_not_changes() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 80}], "x": null}});
        let actual = json!({"spec": {"replicas": 3, "ports": [{"port": 80, "protocol": "TCP"}], "extra": 1}});
        assert!(is_subset(&desired, &actual));
        assert!(!is_subset(&json!({"spec": {"replicas": 4}}), &actual));
        assert!(!is_subset(
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
            &actual
        ));
        assert!(is_subset(&json!({"a": 1.0}), &json!({"a": 1})));
    }

    #[test]
    fn quantities_compare_by_value_as_the_api_server_canonicalises_them() {
        let live = json!({"resources": {"limits": {"cpu": "1", "memory": "512Mi"},
            "requests": {"cpu": "100m", "memory": "1G"}}});
        let spelled = json!({"resources": {"limits": {"cpu": "1000m", "memory": "0.5Gi"},
            "requests": {"cpu": "0.1", "memory": "1e9"}}});
        assert!(is_subset(&spelled, &live));
        let changed = json!({"resources": {"limits": {"cpu": "1001m"}}});
        assert!(!is_subset(&changed, &live));
        assert!(!is_subset(
            &json!({"image": "a:1"}),
            &json!({"image": "a:1.0"})
        ));
    }

    #[test]
    fn first_difference_names_the_field() {
        let live = json!({"spec": {"a": 1, "list": [{"x": "1"}, {"x": "2"}]}});
        assert_eq!(first_difference(&json!({"spec": {"a": 1}}), &live), None);
        assert_eq!(
            first_difference(&json!({"spec": {"list": [{"x": "1"}, {"x": "3"}]}}), &live),
            Some("spec.list.[1].x".to_owned())
        );
        assert_eq!(
            first_difference(&json!({"spec": {"b": 1}}), &live),
            Some("spec.b".to_owned())
        );
    }

    #[test]
    fn changed_fields_name_what_another_manager_changed_among_ours() {
        let desired = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "store-node", "image": "store:1", "ports": [{"containerPort": 6379, "protocol": "TCP"}]}]}}}});
        let live = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "store-node", "image": "store:9", "env": [{"name": "EXTRA", "value": "1"}],
             "ports": [{"containerPort": 6379, "protocol": "TCP"}]}]}}}});
        let scale = json!({"f:spec": {"f:replicas": {}}});
        assert_eq!(changed_fields(&scale, &desired, &live), ["spec.replicas"]);
        let edit = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"store-node\"}": {".": {}, "f:image": {},
                "f:env": {"k:{\"name\":\"EXTRA\"}": {".": {}, "f:name": {}, "f:value": {}}},
                "f:ports": {"k:{\"containerPort\":6379,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}});
        // The image is set back; the env var is not the operator's, and the port did not change.
        assert_eq!(
            changed_fields(&edit, &desired, &live),
            ["spec.template.spec.containers[name=store-node].image"]
        );
        assert_eq!(
            changed_fields(&scale, &desired, &desired),
            Vec::<String>::new()
        );
    }

    #[test]
    fn quantity_values_are_exact() {
        assert_eq!(quantity_nanos("100m"), Some(100_000_000));
        assert_eq!(quantity_nanos("0.1"), Some(100_000_000));
        assert_eq!(quantity_nanos("1.5Gi"), quantity_nanos("1536Mi"));
        assert_eq!(quantity_nanos("1k"), quantity_nanos("1e3"));
        assert_eq!(quantity_nanos("-2"), Some(-2_000_000_000));
        for not_a_quantity in ["", ".", "abc", "1.2.3", "1Xi", "v1", "1.0.0"] {
            assert_eq!(quantity_nanos(not_a_quantity), None, "{not_a_quantity}");
        }
    }
}
