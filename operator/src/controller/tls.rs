//! A reconcile step: the node certificate of a TLS cluster. Without `tls.secretRef` the operator
//! keeps a CA in `<name>-ca` (made once) and a node certificate it signs in `<name>-tls`
//! (cert-manager's layout), issued again at two thirds of its life, when it is missing or
//! unusable, or when the CA changed; the nodes re-read the mounted files, so a renewal restarts
//! nothing. Either way the Secret the pods mount is checked (keys present, the certificate
//! chains to `ca.crt` for the pods' DNS names and is within its life): its expiry goes to
//! `status.tls`, a problem to `Degraded`, and its `ca.crt` becomes the trust of the operator's
//! HTTPS calls to the nodes. [`assess`] and [`needs_issue`] decide (pure); [`reconcile`] reads
//! and writes the Secrets.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use sessionstore_api::constants::{reason, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use sessionstore_api::{names, SessionCluster, TlsStatus};

use super::context::Context;
use super::error::Error;
use crate::apply::Applier;
use crate::node_client::client_config;
use crate::resources::certificate::{self, Issued, Validity};
use crate::resources::{build_tls_secret, TlsSecretKind};
use crate::validate::ValidatedCluster;

/// A certificate with less than this left is reported (`TLSCertificateExpiring`).
pub(super) const EXPIRY_WARNING_SECONDS: i64 = 14 * 24 * 3600;

/// What the step found.
#[derive(Default)]
pub(super) struct Tls {
    /// The operator's TLS client for the nodes, trusting the Secret's `ca.crt`.
    pub(super) client: Option<Arc<rustls::ClientConfig>>,
    /// For `status.tls`.
    pub(super) status: Option<TlsStatus>,
    /// For `Degraded`.
    pub(super) problem: Option<(&'static str, String)>,
}

fn rfc3339(unix_seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix_seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|bytes| bytes.0.as_slice())
        .filter(|bytes| !bytes.is_empty())
}

/// Checks the Secret the pods mount. `generated`: the operator issues it (the status says when
/// it renews). `now` in Unix seconds.
pub(super) fn assess(
    validated: &ValidatedCluster,
    secret_name: &str,
    secret: Option<&Secret>,
    generated: bool,
    now: i64,
) -> Tls {
    let problem = |reason, message: String| Tls {
        problem: Some((reason, message)),
        status: Some(TlsStatus {
            secret_name: secret_name.to_owned(),
            not_after: None,
            renew_after: None,
        }),
        client: None,
    };
    let Some(secret) = secret else {
        return problem(
            reason::TLS_SECRET_MISSING,
            format!("the TLS Secret {secret_name} does not exist: new pods cannot start until it does. Create it (e.g. a cert-manager Certificate with secretName {secret_name}), or remove tls.secretRef to let the operator issue one"),
        );
    };
    let missing: Vec<&str> = [TLS_CERT_KEY, TLS_KEY_KEY, TLS_CA_KEY]
        .into_iter()
        .filter(|key| value(secret, key).is_none())
        .collect();
    if !missing.is_empty() {
        return problem(
            reason::TLS_SECRET_INVALID,
            format!("the TLS Secret {secret_name} lacks {}: it needs tls.crt, tls.key and ca.crt (cert-manager's layout; a cert-manager Certificate writes ca.crt when its issuer is a CA)", missing.join(", ")),
        );
    }
    let cert = value(secret, TLS_CERT_KEY).unwrap_or_default();
    let ca = value(secret, TLS_CA_KEY).unwrap_or_default();
    let validity = match certificate::validity(cert) {
        Ok(validity) => validity,
        Err(error) => {
            return problem(
                reason::TLS_SECRET_INVALID,
                format!("tls.crt of Secret {secret_name} is not a PEM certificate: {error}"),
            )
        }
    };
    let client = match client_config(ca) {
        Ok(client) => client,
        Err(error) => {
            return problem(
                reason::TLS_SECRET_INVALID,
                format!("ca.crt of Secret {secret_name} is not usable: {error}"),
            )
        }
    };
    let status = TlsStatus {
        secret_name: secret_name.to_owned(),
        not_after: Some(rfc3339(validity.not_after)),
        renew_after: generated.then(|| rfc3339(validity.renew_at())),
    };
    let pod = certificate::pod_server_name(
        &validated.name,
        &validated.namespace,
        &names::pod(&validated.name, 0),
    );
    let problem = if validity.not_after <= now {
        Some((
            reason::TLS_CERTIFICATE_EXPIRING,
            format!("the certificate in Secret {secret_name} expired at {}: clients and peers refuse it. Renew it (cert-manager renews before expiry; for a generated one, delete Secret {secret_name} and the operator issues a new one)", rfc3339(validity.not_after)),
        ))
    } else if let Err(error) = certificate::signed_by(cert, ca, &pod) {
        Some((
            reason::TLS_SECRET_INVALID,
            format!("the certificate in Secret {secret_name} does not verify against its ca.crt for {pod}: {error}. It must chain to ca.crt and name the pods (*.{}.{}.svc) and the Services (docs/security.md)", names::headless_service(&validated.name), validated.namespace),
        ))
    } else if validity.not_after - now < EXPIRY_WARNING_SECONDS {
        Some((
            reason::TLS_CERTIFICATE_EXPIRING,
            format!("the certificate in Secret {secret_name} expires at {}, in less than 14 days. Renew it (cert-manager renews at two thirds of its life by default; check its Certificate's status)", rfc3339(validity.not_after)),
        ))
    } else {
        None
    };
    Tls {
        client: Some(client),
        status: Some(status),
        problem,
    }
}

/// Whether the generated node Secret must be issued (again): missing, unusable, signed with
/// another CA than `ca_pem`, or past two thirds of its life at `now`.
pub(super) fn needs_issue(node: Option<&Secret>, ca_pem: &str, now: i64) -> bool {
    let Some(node) = node else {
        return true;
    };
    let (Some(cert), Some(_), Some(ca)) = (
        value(node, TLS_CERT_KEY),
        value(node, TLS_KEY_KEY),
        value(node, TLS_CA_KEY),
    ) else {
        return true;
    };
    if ca != ca_pem.as_bytes() || certificate::signed_by(cert, ca, "localhost").is_err() {
        return true;
    }
    match certificate::validity(cert) {
        Ok(validity) => now >= validity.renew_at(),
        Err(_) => true,
    }
}

/// The generated CA from `<name>-ca`, when it holds a certificate and key within its life.
fn usable_ca(secret: Option<&Secret>, now: i64) -> Option<Issued> {
    let secret = secret?;
    let cert = String::from_utf8(value(secret, TLS_CERT_KEY)?.to_vec()).ok()?;
    let key = String::from_utf8(value(secret, TLS_KEY_KEY)?.to_vec()).ok()?;
    let Validity { not_after, .. } = certificate::validity(cert.as_bytes()).ok()?;
    // A node certificate must not outlive its CA.
    (not_after > now + certificate::NODE_VALIDITY.as_secs() as i64).then_some(Issued {
        cert_pem: cert,
        key_pem: key,
    })
}

/// Issues what the generated certificates need; returns the event to publish.
async fn issue_generated(
    applier: &Applier,
    validated: &ValidatedCluster,
    now: i64,
) -> Result<Result<Option<String>, String>, Error> {
    let ca_name = names::tls_ca_secret(&validated.name);
    let node_name = names::tls_secret(&validated.name);
    let ca_secret = applier.get::<Secret>(&ca_name).await?;
    let ca = match usable_ca(ca_secret.as_ref(), now) {
        Some(ca) => ca,
        None => {
            let ca = match certificate::issue_ca(&validated.name, &validated.namespace, now) {
                Ok(ca) => ca,
                Err(error) => return Ok(Err(error.to_string())),
            };
            applier
                .apply(&build_tls_secret(validated, TlsSecretKind::Ca, &ca, None))
                .await?;
            ca
        }
    };
    let node_secret = applier.get::<Secret>(&node_name).await?;
    if !needs_issue(node_secret.as_ref(), &ca.cert_pem, now) {
        return Ok(Ok(None));
    }
    let node =
        match certificate::issue_node(&validated.name, &validated.namespace, &ca.key_pem, now) {
            Ok(node) => node,
            Err(error) => return Ok(Err(error.to_string())),
        };
    applier
        .apply(&build_tls_secret(
            validated,
            TlsSecretKind::Node,
            &node,
            Some(&ca.cert_pem),
        ))
        .await?;
    let validity = certificate::validity(node.cert_pem.as_bytes()).ok();
    Ok(Ok(Some(format!(
        "issued the node certificate in Secret {node_name}, signed by the CA in Secret {ca_name}, valid until {}; the nodes pick it up without a restart, and the operator issues the next one after {}",
        validity.map(|v| rfc3339(v.not_after)).unwrap_or_default(),
        validity.map(|v| rfc3339(v.renew_at())).unwrap_or_default(),
    ))))
}

/// Issues or renews the generated certificates, checks the mounted Secret.
pub(super) async fn reconcile(
    cluster: &SessionCluster,
    ctx: &Context,
    applier: &Applier,
    validated: &ValidatedCluster,
) -> Result<Tls, Error> {
    let Some(tls) = &validated.tls else {
        for name in [
            names::tls_secret(&validated.name),
            names::tls_ca_secret(&validated.name),
        ] {
            applier
                .delete_owned::<Secret>(&name, &validated.owner.uid)
                .await?;
        }
        return Ok(Tls::default());
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut issue_problem = None;
    if tls.generated {
        match issue_generated(applier, validated, now).await? {
            Ok(Some(note)) => {
                ctx.publish(cluster, false, reason::TLS_CERTIFICATE_ISSUED, note)
                    .await;
            }
            Ok(None) => {}
            Err(error) => {
                issue_problem = Some((
                    reason::TLS_SECRET_MISSING,
                    format!("the operator could not issue the node certificate: {error}; it retries on every reconcile"),
                ));
            }
        }
    }
    let secret = applier.get::<Secret>(&tls.secret).await?;
    let mut assessed = assess(validated, &tls.secret, secret.as_ref(), tls.generated, now);
    if issue_problem.is_some() {
        assessed.problem = issue_problem;
    }
    Ok(assessed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;
    use crate::resources::test_support::validated;
    use crate::resources::tls_data;

    fn now() -> i64 {
        k8s_openapi::jiff::Timestamp::now().as_second()
    }

    fn secret(data: BTreeMap<String, ByteString>) -> Secret {
        Secret {
            data: Some(data),
            ..Secret::default()
        }
    }

    fn generated(now: i64) -> (Issued, Issued) {
        let ca = certificate::issue_ca("demo", "apps", now).unwrap_or_else(|e| panic!("{e}"));
        let node = certificate::issue_node("demo", "apps", &ca.key_pem, now)
            .unwrap_or_else(|e| panic!("{e}"));
        (ca, node)
    }

    #[test]
    fn a_good_secret_reports_its_expiry_and_trusts_its_ca() {
        let now = now();
        let (ca, node) = generated(now);
        let cluster = validated(serde_json::json!({"tls": {"enabled": true}}));
        let good = secret(tls_data(&node, Some(&ca.cert_pem)));
        let tls = assess(&cluster, "demo-tls", Some(&good), true, now);
        assert_eq!(tls.problem, None);
        assert!(tls.client.is_some());
        let validity =
            certificate::validity(node.cert_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            tls.status,
            Some(TlsStatus {
                secret_name: "demo-tls".into(),
                not_after: Some(rfc3339(validity.not_after)),
                renew_after: Some(rfc3339(validity.renew_at())),
            })
        );
        // Near its end: still used, reported.
        let late = validity.not_after - 3600;
        let expiring = assess(&cluster, "demo-tls", Some(&good), false, late);
        assert_eq!(expiring.status.and_then(|s| s.renew_after), None);
        assert_eq!(
            expiring.problem,
            Some((reason::TLS_CERTIFICATE_EXPIRING, format!("the certificate in Secret demo-tls expires at {}, in less than 14 days. Renew it (cert-manager renews at two thirds of its life by default; check its Certificate's status)", rfc3339(validity.not_after))))
        );
    }

    #[test]
    fn a_missing_or_incomplete_or_foreign_secret_is_explained() {
        let now = now();
        let cluster = validated(
            serde_json::json!({"tls": {"enabled": true, "secretRef": {"name": "web-cert"}}}),
        );
        assert_eq!(
            assess(&cluster, "web-cert", None, false, now).problem,
            Some((reason::TLS_SECRET_MISSING, "the TLS Secret web-cert does not exist: new pods cannot start until it does. Create it (e.g. a cert-manager Certificate with secretName web-cert), or remove tls.secretRef to let the operator issue one".to_owned()))
        );
        let (ca, node) = generated(now);
        let mut data = tls_data(&node, None);
        assert_eq!(
            assess(&cluster, "web-cert", Some(&secret(data.clone())), false, now).problem,
            Some((reason::TLS_SECRET_INVALID, "the TLS Secret web-cert lacks ca.crt: it needs tls.crt, tls.key and ca.crt (cert-manager's layout; a cert-manager Certificate writes ca.crt when its issuer is a CA)".to_owned()))
        );
        // Signed by another CA than the one in ca.crt.
        let (other, _) = generated(now);
        data.insert(TLS_CA_KEY.into(), ByteString(other.cert_pem.into_bytes()));
        let foreign = assess(&cluster, "web-cert", Some(&secret(data)), false, now);
        assert!(foreign.problem.is_some_and(|(reason, message)| reason
            == reason::TLS_SECRET_INVALID
            && message.starts_with(
                "the certificate in Secret web-cert does not verify against its ca.crt for demo-0.demo-headless.apps.svc: "
            )));
        // A certificate for another cluster's names.
        let stranger = certificate::issue_node("other", "apps", &ca.key_pem, now)
            .unwrap_or_else(|e| panic!("{e}"));
        let wrong_names = assess(
            &cluster,
            "web-cert",
            Some(&secret(tls_data(&stranger, Some(&ca.cert_pem)))),
            false,
            now,
        );
        assert_eq!(
            wrong_names.problem.map(|p| p.0),
            Some(reason::TLS_SECRET_INVALID)
        );
    }

    #[test]
    fn the_node_certificate_is_issued_again_at_two_thirds_of_its_life_or_for_a_new_ca() {
        let now = now();
        let (ca, node) = generated(now);
        let current = secret(tls_data(&node, Some(&ca.cert_pem)));
        assert!(needs_issue(None, &ca.cert_pem, now));
        assert!(!needs_issue(Some(&current), &ca.cert_pem, now));
        let validity =
            certificate::validity(node.cert_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!needs_issue(
            Some(&current),
            &ca.cert_pem,
            validity.renew_at() - 1
        ));
        assert!(needs_issue(
            Some(&current),
            &ca.cert_pem,
            validity.renew_at()
        ));
        let (other, _) = generated(now);
        assert!(needs_issue(Some(&current), &other.cert_pem, now));
        assert!(needs_issue(
            Some(&secret(tls_data(&node, None))),
            &ca.cert_pem,
            now
        ));
    }
}
