//! A reconcile step: the cluster's generated keys, each in a Secret the operator owns and the
//! nodes mount: the peer key (`<name>-peer-key`, key `key`), which a peer must prove it holds
//! before it may replicate, and the operator's token (`<name>-operator-token`, key `token`),
//! which `POST /v1/cluster/leave` requires and the operator's node client sends. A key is
//! generated once from the kernel's random source and then kept: a value someone put there
//! (a rotation, docs/security.md) is used as it is. When the random source fails nothing is
//! written and `Degraded` says so: there is no fallback value.

use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use sessionstore_api::constants::{reason, OPERATOR_TOKEN_KEY, PEER_KEY_KEY};
use sessionstore_api::names;

use super::error::Error;
use crate::apply::Applier;
use crate::resources;
use crate::validate::ValidatedCluster;

/// What the step found or made.
pub(super) struct Keys {
    /// The operator's token, for the leave call; `None` when it could not be generated.
    pub(super) operator_token: Option<String>,
    /// For `Degraded`: a key could not be generated.
    pub(super) problem: Option<(&'static str, String)>,
}

/// `bytes` random bytes as hex, read from `source` (the kernel's random source, see
/// `ControllerConfig::random_source`). An error says what failed.
pub(super) fn random_hex(source: &Path, bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open(source)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut buffer))
        .map_err(|error| format!("reading {} failed: {error}", source.display()))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The note of the `RandomnessUnavailable` condition: `what` could not be generated.
pub(super) fn randomness_note(what: &str, error: &str) -> String {
    format!("the operator could not generate {what}: {error}. Nothing was written and no weaker value is used; fix the operator's access to /dev/urandom (it retries on every reconcile)")
}

/// The usable value of `key` in `secret`: UTF-8 text with at least one non-blank line.
fn usable(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    text.lines()
        .any(|line| !line.trim().is_empty())
        .then_some(text)
}

/// Ensures `<name>-peer-key` and `<name>-operator-token` hold a key.
pub(super) async fn reconcile(
    applier: &Applier,
    validated: &ValidatedCluster,
    random_source: &Path,
) -> Result<Keys, Error> {
    let mut problem = None;
    let mut operator_token = None;
    for (name, key, what) in [
        (
            names::peer_key_secret(&validated.name),
            PEER_KEY_KEY,
            "the peer key",
        ),
        (
            names::operator_token_secret(&validated.name),
            OPERATOR_TOKEN_KEY,
            "the operator token",
        ),
    ] {
        let existing = applier.get::<Secret>(&name).await?;
        let value = match existing.as_ref().and_then(|secret| usable(secret, key)) {
            Some(value) => Some(value),
            None => match random_hex(random_source, 32) {
                Ok(value) => {
                    applier
                        .apply(&resources::build_key_secret(validated, &name, key, &value))
                        .await?;
                    Some(value)
                }
                Err(error) => {
                    problem.get_or_insert((
                        reason::RANDOMNESS_UNAVAILABLE,
                        randomness_note(what, &error),
                    ));
                    None
                }
            },
        };
        if key == OPERATOR_TOKEN_KEY {
            // The node reads the file trimming one trailing newline; so does this.
            operator_token = value.map(|text| {
                let token = text.strip_suffix('\n').unwrap_or(&text);
                token.strip_suffix('\r').unwrap_or(token).to_owned()
            });
        }
    }
    Ok(Keys {
        operator_token,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn random_keys_are_64_hex_digits_and_differ() {
        let source = Path::new("/dev/urandom");
        let first = random_hex(source, 32);
        let second = random_hex(source, 32);
        assert!(first
            .as_ref()
            .is_ok_and(|k| k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit())));
        assert_ne!(first, second);
    }

    #[test]
    fn an_unreadable_source_is_an_error_naming_it() {
        assert_eq!(
            random_hex(Path::new("/nonexistent/random"), 32),
            Err(
                "reading /nonexistent/random failed: No such file or directory (os error 2)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_key_is_usable_when_it_has_a_non_blank_line() {
        let secret = |value: &[u8]| Secret {
            data: Some(BTreeMap::from([(
                "key".to_owned(),
                ByteString(value.to_vec()),
            )])),
            ..Secret::default()
        };
        assert_eq!(
            usable(&secret(b"new\nold\n"), "key").as_deref(),
            Some("new\nold\n")
        );
        assert_eq!(usable(&secret(b" \n"), "key"), None);
        assert_eq!(usable(&secret(&[0xff]), "key"), None);
        assert_eq!(usable(&secret(b"k"), "other"), None);
    }
}
