//! The metadata every child object shares: its name and namespace, the standard labels and the
//! controller owner reference, so garbage collection removes it with its SessionCluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sessionstore_api::names;

use crate::validate::ValidatedCluster;

/// Metadata of a child object: name, namespace, the standard labels, the owner reference.
pub(crate) fn child_meta(cluster: &ValidatedCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(names::labels(&cluster.name)),
        owner_references: Some(vec![cluster.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Labels plus extra ones (the standard labels win).
pub(crate) fn labels_with(
    cluster: &ValidatedCluster,
    extra: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = extra.cloned().unwrap_or_default();
    labels.extend(names::labels(&cluster.name));
    labels
}
