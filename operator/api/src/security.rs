//! The security part of the SessionCluster spec and status: client authentication and named
//! users, TLS, the NetworkPolicy, and the certificate the status reports (docs/security.md).
//! Every `///` here is what `kubectl explain sessioncluster` prints.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Client authentication (Redis `AUTH` and `Authorization: Bearer` on the HTTP session API).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Require a password (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// An existing Secret holding the password. When absent the operator generates a random
    /// password into the Secret `<name>-auth` (key `password`) and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Named users (Redis `AUTH <name> <password>`), each with its password in a Secret and a
    /// role: `readwrite`, or `readonly` (writes are refused with Redis's `NOPERM`). The default
    /// user (plain `AUTH <password>`) keeps the password above. Needs `enabled: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub users: Vec<UserSpec>,
}

impl Default for AuthSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            secret_ref: None,
            users: Vec::new(),
        }
    }
}

/// A named user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The user name clients send with `AUTH`: letters, digits, `.`, `_` and `-`, at most 63
    /// characters, not `default`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The Secret (in the SessionCluster's namespace) and key holding the user's password. A
    /// new value there is picked up by the nodes without a restart.
    pub secret_ref: SecretKeyRef,
    /// `readwrite` (default) or `readonly`.
    #[serde(default)]
    pub role: UserRole,
}

/// What a named user may do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Every command.
    #[default]
    ReadWrite,
    /// Reads only; writes get `NOPERM`.
    ReadOnly,
}

impl UserRole {
    /// The spelling of store-node's `<users-dir>/<user>/role` file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "readwrite",
            Self::ReadOnly => "readonly",
        }
    }
}

/// TLS for clients, the HTTP API and replication.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.enabled == oldSelf.enabled").message("tls.enabled cannot change on a running cluster: nodes with and without TLS cannot replicate to each other while the pods roll, so sessions held only by the old nodes would be lost. Create a new SessionCluster with the other setting, move clients to its Service, then delete this one").reason(Reason::FieldValueForbidden))]
pub struct TlsSpec {
    /// Serve TLS: the Redis port (6379) speaks only TLS, the HTTP port only HTTPS, and peers
    /// replicate over mutual TLS with certificates signed by the CA. Default false. Set it when
    /// creating the cluster: it cannot change afterwards.
    #[serde(default)]
    pub enabled: bool,
    /// A Secret in cert-manager's layout (`tls.crt`, `tls.key`, `ca.crt`), e.g. the
    /// `secretName` of a cert-manager Certificate. Its certificate must name the Services and
    /// the pods (see docs/security.md) and allow both `server auth` and `client auth` (peers
    /// present it to each other). When absent the operator creates a CA (`<name>-ca`) and a
    /// node certificate (`<name>-tls`) and renews the latter at two thirds of its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalSecretRef>,
    /// Require client certificates signed by the CA on the Redis port and the HTTP session API
    /// (Redis's `tls-auth-clients yes`). Default false: clients verify the server only.
    #[serde(default)]
    pub client_auth: bool,
}

/// A Secret in the SessionCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the SessionCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret (default `password`).
    #[serde(default = "default_password_key")]
    pub key: String,
}

/// NetworkPolicy for the nodes (on by default).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create a NetworkPolicy (default true): the peer port only from the cluster's own pods;
    /// the Redis and HTTP ports from `allowedClients`; the HTTP port also from the operator's
    /// namespace (status polls, leave) and from `metricsFrom` (Prometheus scrapes `/metrics`).
    /// Enforced only where the cluster's network plugin implements NetworkPolicy.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may reach the Redis and HTTP ports, as NetworkPolicy peers (pod and namespace
    /// selectors, IP blocks); empty or absent means every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<Vec<NetworkPolicyPeer>>,
    /// Who may scrape `/metrics` on the HTTP port when `allowedClients` is set. Defaults to
    /// the namespace named `monitoring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_from: Option<Vec<NetworkPolicyPeer>>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_clients: None,
            metrics_from: None,
        }
    }
}

/// The node certificate the pods mount.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// The Secret the pods mount.
    pub secret_name: String,
    /// When the certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the operator renews it (generated certificates only; RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_after: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_password_key() -> String {
    crate::constants::PASSWORD_KEY.to_owned()
}
