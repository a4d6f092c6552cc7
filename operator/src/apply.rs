//! The only place that writes child objects. Server-side apply under one field manager, skipped
//! when the object already holds every field we would set (so a steady cluster costs reads,
//! never writes), create-once for the generated password, and deletes of what the spec no longer
//! asks for.

use std::fmt::Debug;

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
        (desired, actual) => desired == actual,
    }
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
        if let Some(existing) = &existing {
            if is_subset(&without_status(serialize(desired)?), &serialize(existing)?) {
                return Ok(false);
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
}
