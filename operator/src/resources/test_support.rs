//! What the builders' tests start from: a validated cluster made from a JSON spec.

use crate::validate::{tests::cluster, validate, ValidatedCluster};

/// A validated cluster named `demo` in namespace `apps` from a JSON spec.
pub(crate) fn validated(spec: serde_json::Value) -> ValidatedCluster {
    match validate(&cluster("demo", spec), "sessionstore/store-node:0.1.0") {
        Ok(validated) => validated,
        Err(error) => panic!("test spec is invalid: {error}"),
    }
}
