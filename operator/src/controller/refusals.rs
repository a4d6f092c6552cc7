//! A reconcile step: the spec checked against the live StatefulSet, whose volumes are fixed once it
//! exists. Pure. A refused change is the user's to resolve: it is explained in `Degraded`, and the
//! rest of the spec is still applied.

use sessionstore_api::StorageMode;

use super::inputs::Live;
use crate::validate::{quantity_bytes, ValidatedCluster};

/// A change of the spec the live StatefulSet cannot take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Refusal {
    /// `storage.mode` differs from the StatefulSet's: the StatefulSet is left as it is.
    pub(super) mode_change: bool,
    /// What cannot be done and what to do instead, for the `Degraded` condition.
    pub(super) message: Option<String>,
}

/// What of the spec the live StatefulSet refuses: a storage mode change, or a smaller volume
/// (the message of the latter wins when both).
pub(super) fn refusal(validated: &ValidatedCluster, live: &Live) -> Refusal {
    let has_claims = live.has_claim_templates();
    let mode_change =
        live.statefulset.is_some() && has_claims != (validated.mode == StorageMode::Disc);
    let mut message = None;
    if mode_change {
        message = Some(format!(
            "storage.mode cannot change from {} to {}: the StatefulSet's volumes are fixed. Set it back, or create a new SessionCluster with the new mode and move clients to it",
            if has_claims { "disc" } else { "ram" },
            validated.mode.as_str()
        ));
    }
    let claim_size = live.claim_size();
    if let (Some(current), Some(wanted)) = (
        claim_size.as_ref().and_then(quantity_bytes),
        validated.volume_size_bytes,
    ) {
        if wanted < current {
            message = Some(format!(
                "storage.size cannot shrink from {} to {}: Kubernetes cannot shrink a volume. The volumes keep their size",
                claim_size.as_ref().map(|q| q.0.as_str()).unwrap_or_default(),
                validated.volume_size.as_ref().map(|q| q.0.as_str()).unwrap_or_default()
            ));
        }
    }
    Refusal {
        mode_change,
        message,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;

    use super::*;
    use crate::resources::test_support::validated;
    use crate::resources::{build_statefulset, StatefulSetInputs};

    fn live_from(spec: serde_json::Value) -> Live {
        let cluster = validated(spec);
        let statefulset: StatefulSet = build_statefulset(
            &cluster,
            &StatefulSetInputs {
                replicas: cluster.replicas,
                config_hash: String::new(),
                auth_revision: None,
                claim_size: None,
            },
        );
        Live {
            statefulset: Some(statefulset),
            pods: Vec::new(),
        }
    }

    #[test]
    fn a_first_reconcile_refuses_nothing() {
        let live = Live {
            statefulset: None,
            pods: Vec::new(),
        };
        let disc = validated(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
        assert_eq!(refusal(&disc, &live), Refusal::default());
    }

    #[test]
    fn the_storage_mode_of_a_live_statefulset_is_fixed() {
        let ram = live_from(serde_json::json!({}));
        let disc = validated(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
        let refused = refusal(&disc, &ram);
        assert!(refused.mode_change);
        assert_eq!(
            refused.message.as_deref(),
            Some("storage.mode cannot change from ram to disc: the StatefulSet's volumes are fixed. Set it back, or create a new SessionCluster with the new mode and move clients to it")
        );
    }

    #[test]
    fn volumes_may_grow_but_not_shrink() {
        let live = live_from(serde_json::json!({"storage": {"mode": "disc", "size": "2Gi"}}));
        let grown = validated(serde_json::json!({"storage": {"mode": "disc", "size": "3Gi"}}));
        assert_eq!(refusal(&grown, &live), Refusal::default());
        let shrunk = validated(serde_json::json!({"storage": {"mode": "disc", "size": "1Gi"}}));
        assert_eq!(
            refusal(&shrunk, &live),
            Refusal {
                mode_change: false,
                message: Some("storage.size cannot shrink from 2Gi to 1Gi: Kubernetes cannot shrink a volume. The volumes keep their size".to_owned()),
            }
        );
    }
}
