//! The generated password Secret, created once and then kept: the operator never regenerates a
//! password that clients may already use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sessionstore_api::constants::PASSWORD_KEY;

use super::child_meta;
use crate::naming;
use crate::validate::ValidatedCluster;

/// The Secret `<name>-auth` holding `password`.
pub fn build_auth_secret(cluster: &ValidatedCluster, password: &str) -> Secret {
    Secret {
        metadata: child_meta(cluster, naming::auth_secret(&cluster.name)),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            password.to_owned(),
        )])),
        ..Secret::default()
    }
}
