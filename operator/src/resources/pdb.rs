//! The PodDisruptionBudget: voluntary disruptions (drains) take one node at a time, so the
//! others keep every session.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use sessionstore_api::names;

use super::meta::child_meta;
use crate::validate::ValidatedCluster;

/// The PodDisruptionBudget `<name>` with `maxUnavailable: 1`.
pub fn build_pod_disruption_budget(cluster: &ValidatedCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(cluster, names::pod_disruption_budget(&cluster.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector_labels(&cluster.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::validated;

    #[test]
    fn one_node_at_a_time() {
        let pdb = build_pod_disruption_budget(&validated(serde_json::json!({})));
        let spec = pdb.spec.unwrap_or_default();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(names::selector_labels("demo"))
        );
        assert_eq!(pdb.metadata.owner_references.map(|o| o.len()), Some(1));
    }
}
