//! Why a reconcile failed, naming the step: each variant is retried with backoff, except a
//! namespace being deleted, which is not a failure at all.

use crate::apply::ApplyError;

/// A reconcile failure the operator retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing or reading a child object failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Listing the cluster's pods failed.
    #[error("failed to list pods of {name}: {source}")]
    ListPods {
        /// SessionCluster name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Listing or patching volume claims failed.
    #[error("failed to expand volume claims of {name}: {source}")]
    ExpandClaims {
        /// SessionCluster name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("failed to update the status of {name}: {source}")]
    Status {
        /// SessionCluster name.
        name: String,
        /// API error.
        source: kube::Error,
    },
    /// Reading the password Secret failed.
    #[error("failed to read password Secret {secret}: {source}")]
    ReadSecret {
        /// Secret name.
        secret: String,
        /// API error.
        source: kube::Error,
    },
    /// The password for the leave call is missing or not text.
    #[error("failed to read password Secret {secret}: {message}")]
    Password {
        /// Secret name.
        secret: String,
        /// What went wrong.
        message: String,
    },
    /// The object has no namespace or name.
    #[error("SessionCluster without namespace or name")]
    MissingMetadata,
}

fn api_error(error: &Error) -> Option<&kube::Error> {
    match error {
        Error::Apply(
            ApplyError::Read { source, .. }
            | ApplyError::Apply { source, .. }
            | ApplyError::Create { source, .. }
            | ApplyError::Delete { source, .. },
        )
        | Error::ListPods { source, .. }
        | Error::ExpandClaims { source, .. }
        | Error::ReadSecret { source, .. }
        | Error::Status { source, .. } => Some(source),
        _ => None,
    }
}

impl Error {
    /// The namespace is being deleted (or is gone): the SessionCluster goes with it, so there is
    /// nothing to retry or report. The controller's cache sees the cluster a little longer than
    /// the API server, and writes into a terminating namespace are refused with 403.
    pub fn namespace_gone(&self) -> bool {
        match api_error(self) {
            Some(kube::Error::Api(status)) => {
                (status.code == 403 && status.message.contains("because it is being terminated"))
                    || (status.code == 404 && status.message.starts_with("namespaces "))
            }
            _ => false,
        }
    }

    /// Category for the failure metric.
    pub fn category(&self) -> &'static str {
        if self.namespace_gone() {
            return "namespace_deleted";
        }
        match self {
            Self::MissingMetadata => "invalid_object",
            Self::Password { .. } => "password",
            _ => "api",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_failure(code: u16, message: &str) -> Error {
        Error::Apply(ApplyError::Apply {
            kind: "ConfigMap".into(),
            name: "web-config".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure(message, "Forbidden").with_code(code),
            )),
        })
    }

    #[test]
    fn writes_refused_by_a_terminating_namespace_are_not_failures() {
        let terminating = api_failure(
            403,
            "configmaps \"web-config\" is forbidden: unable to create new content in namespace e2e because it is being terminated",
        );
        assert!(terminating.namespace_gone());
        assert_eq!(terminating.category(), "namespace_deleted");
        assert!(api_failure(404, "namespaces \"e2e\" not found").namespace_gone());
        let rbac = api_failure(403, "configmaps is forbidden: User cannot patch resource");
        assert!(!rbac.namespace_gone());
        assert_eq!(rbac.category(), "api");
    }
}
