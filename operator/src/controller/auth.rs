//! A reconcile step: the passwords the nodes accept. Clients take the password from the auth
//! Secret (`<name>-auth`, or `auth.secretRef`); the nodes mount `<name>-node-auth`, which the
//! operator writes from it, one accepted password per line. A new password in the auth Secret
//! (changed, or generated again after the Secret was deleted) is written there next to the
//! previous one, and the pod template's revision of the current password (the auth Secret's uid
//! and resourceVersion when the password was read: nothing derived from it) rolls the pods: every
//! restarted node accepts both, every node not restarted yet still accepts the previous one, so
//! a client using the previous password is never refused during the roll. Once every pod runs
//! the new template the previous password is dropped from the Secret (nodes started from then
//! on accept only the new one). Each step is announced with an event.
//!
//! [`plan`] decides (pure); [`reconcile`] reads the Secrets, writes `<name>-node-auth` and
//! publishes the events.

use k8s_openapi::api::core::v1::Secret;
use sessionstore_api::constants::{reason, LABEL_CONTROLLER_REVISION, PASSWORD_KEY};
use sessionstore_api::names;
use sessionstore_api::pods::pod_is_ready;
use sessionstore_api::SessionCluster;

use super::context::Context;
use super::error::Error;
use super::inputs::{read_secret_value, Live};
use crate::apply::Applier;
use crate::resources;
use crate::resources::REVISION_KEY;
use crate::validate::ValidatedCluster;

/// The passwords the nodes accept, as `<name>-node-auth` holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodePasswords {
    /// The password of the auth Secret the nodes run with.
    pub(super) current: String,
    /// The one before it, while a new password rolls out.
    pub(super) previous: Option<String>,
    /// The auth Secret's revision when `current` was read from it: the pod template's
    /// `sessionstore.dev/auth-revision`. `None` in a Secret written before revisions existed.
    pub(super) revision: Option<String>,
}

impl NodePasswords {
    /// Parses the Secret's `password` value (one accepted password per line, current first)
    /// and its `revision`.
    fn parse(text: &str, revision: Option<String>) -> Option<Self> {
        let mut lines = text.lines().filter(|line| !line.is_empty());
        Some(Self {
            current: lines.next()?.to_owned(),
            previous: lines.next().map(str::to_owned),
            revision,
        })
    }

    /// The passwords, current first.
    pub(super) fn all(&self) -> Vec<&str> {
        std::iter::once(self.current.as_str())
            .chain(self.previous.as_deref())
            .collect()
    }
}

/// What the auth Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A usable password and the auth Secret's revision.
    Found(String, String),
    /// The Secret or its key is missing, explained.
    Missing(String),
    /// The value cannot be a password (several lines, empty, not UTF-8), explained.
    Invalid(String),
}

/// What to do about the node passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// What `<name>-node-auth` must now hold; `None` leaves it as it is.
    pub(super) write: Option<NodePasswords>,
    /// The passwords the nodes accept once the write is done.
    pub(super) accepted: Option<NodePasswords>,
    /// For `Degraded`: the auth Secret cannot be used.
    pub(super) problem: Option<(&'static str, String)>,
    /// An event to announce: reason and note.
    pub(super) event: Option<(&'static str, String)>,
}

/// Decides what the node Secret holds next. `secret` names the auth Secret for the messages;
/// `rolled_out` says every pod runs the template of the current password; `regenerated` says
/// the operator has just generated the auth Secret again.
pub(super) fn plan(
    secret: &str,
    source: Source,
    node: Option<NodePasswords>,
    rolled_out: bool,
    regenerated: bool,
) -> Plan {
    let keep = |problem| Plan {
        write: None,
        accepted: node.clone(),
        problem,
        event: None,
    };
    let (password, revision) = match source {
        Source::Found(password, revision) => (password, revision),
        Source::Missing(message) => return keep(Some((reason::AUTH_SECRET_MISSING, message))),
        Source::Invalid(message) => return keep(Some((reason::AUTH_SECRET_INVALID, message))),
    };
    let write = |passwords: NodePasswords, event| Plan {
        write: Some(passwords.clone()),
        accepted: Some(passwords),
        problem: None,
        event,
    };
    match node {
        None => write(
            NodePasswords {
                current: password,
                previous: None,
                revision: Some(revision),
            },
            None,
        ),
        Some(node) if node.current != password => {
            let what = if regenerated {
                format!("Secret {secret} was missing and was generated again with a new password")
            } else {
                format!("the password in Secret {secret} changed")
            };
            write(
                NodePasswords {
                    current: password,
                    previous: Some(node.current),
                    revision: Some(revision),
                },
                Some((
                    reason::PASSWORD_CHANGED,
                    format!("{what}: the pods restart one at a time, and until all run with it every node accepts the new and the previous password, so clients with the previous one keep working. Switch them to the new password after the PasswordRotated event"),
                )),
            )
        }
        // Written before revisions existed: the pods roll once onto the revision annotation.
        Some(node) if node.revision.is_none() => write(
            NodePasswords {
                revision: Some(revision),
                ..node
            },
            None,
        ),
        Some(node) if node.previous.is_some() && rolled_out => write(
            NodePasswords {
                current: password,
                previous: None,
                revision: node.revision,
            },
            Some((
                reason::PASSWORD_ROTATED,
                format!("every pod runs with the new password of Secret {secret}; running nodes still accept the previous one until they restart, nodes that start from now on accept only the new one. Switch the clients to the new password (set spec.restartedAt to refuse the previous one at once)"),
            )),
        ),
        Some(node) => Plan {
            write: None,
            accepted: Some(node),
            problem: None,
            event: None,
        },
    }
}

/// The outcome of the step, for the StatefulSet, the scale-down and the status.
pub(super) struct Auth {
    /// The pod template's auth revision; `None` without auth.
    pub(super) revision: Option<String>,
    /// For `Degraded`.
    pub(super) problem: Option<(&'static str, String)>,
}

/// Reads the auth Secret and `<name>-node-auth`, writes the latter as [`plan`] decides and
/// publishes its event. `regenerated`: the children step has just created the generated auth
/// Secret.
pub(super) async fn reconcile(
    cluster: &SessionCluster,
    ctx: &Context,
    applier: &Applier,
    validated: &ValidatedCluster,
    live: &Live,
    regenerated: bool,
) -> Result<Auth, Error> {
    let node_secret = names::node_auth_secret(&validated.name);
    let Some(auth) = &validated.auth else {
        applier
            .delete_owned::<Secret>(&node_secret, &validated.owner.uid)
            .await?;
        return Ok(Auth {
            revision: None,
            problem: None,
        });
    };
    let source = match read_secret_value(ctx, &validated.namespace, &auth.secret, &auth.key).await?
    {
        None => Source::Missing(format!(
            "the password Secret {} with key {} does not exist: the nodes keep the password they run with (also when they restart). Create it (a new password there rotates it), or point auth.secretRef at an existing one",
            auth.secret, auth.key
        )),
        Some(value) => source_of(&auth.secret, &auth.key, value.bytes, value.revision),
    };
    let node = applier
        .get::<Secret>(&node_secret)
        .await?
        .and_then(|secret| secret.data)
        .and_then(|mut data| {
            let revision = data
                .remove(REVISION_KEY)
                .and_then(|bytes| String::from_utf8(bytes.0).ok());
            let text = String::from_utf8(data.remove(PASSWORD_KEY)?.0).ok()?;
            NodePasswords::parse(&text, revision)
        });
    let rolled_out = match &node {
        Some(NodePasswords {
            previous: Some(_),
            revision: Some(revision),
            ..
        }) => rolled_out(live, validated.replicas, revision),
        _ => false,
    };
    let plan = plan(&auth.secret, source, node, rolled_out, regenerated);
    if let Some(passwords) = &plan.write {
        applier
            .apply(&resources::build_node_auth_secret(
                validated,
                &passwords.all(),
                passwords.revision.as_deref().unwrap_or_default(),
            ))
            .await?;
    }
    if let Some((reason, note)) = &plan.event {
        ctx.publish(cluster, false, reason, note.clone()).await;
    }
    let revision = match &plan.accepted {
        Some(NodePasswords {
            revision: Some(revision),
            ..
        }) => Some(revision.clone()),
        // Rolling now would replace running nodes with pods that cannot start.
        _ => live.template_auth_revision(),
    };
    let mut problem = plan.problem;
    for user in &validated.users {
        let reference = &user.secret_ref;
        let found =
            read_secret_value(ctx, &validated.namespace, &reference.name, &reference.key).await?;
        if found.is_none() && problem.is_none() {
            problem = Some((
                reason::USER_SECRET_MISSING,
                format!(
                    "the password Secret {} with key {} of user {} does not exist: the pods mount it, so new pods cannot start until it does. Create it, or remove the user from auth.users",
                    reference.name, reference.key, user.name
                ),
            ));
        }
    }
    Ok(Auth { revision, problem })
}

/// The password in `bytes` (one trailing newline dropped, as the node drops it), or why it
/// cannot be one: the nodes take each line as a password of its own.
fn source_of(secret: &str, key: &str, bytes: Vec<u8>, revision: String) -> Source {
    let Ok(text) = String::from_utf8(bytes) else {
        return Source::Invalid(format!(
            "the password in Secret {secret} key {key} is not UTF-8 text: the nodes keep the password they run with. Put a text password there"
        ));
    };
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() || password.contains(['\n', '\r']) {
        return Source::Invalid(format!(
            "the password in Secret {secret} key {key} is empty or spans several lines: the nodes keep the password they run with. Put a password of one line there"
        ));
    }
    Source::Found(password.to_owned(), revision)
}

/// Whether every pod the spec asks for runs the StatefulSet's current template, whose password
/// revision is `revision`, and is ready: then every node accepts the new password.
fn rolled_out(live: &Live, desired: i32, revision: &str) -> bool {
    let Some(statefulset) = &live.statefulset else {
        return false;
    };
    let status = statefulset.status.clone().unwrap_or_default();
    let settled = status.observed_generation == statefulset.metadata.generation
        && status.update_revision.is_some()
        && status.current_revision == status.update_revision;
    if !settled || live.template_auth_revision().as_deref() != Some(revision) {
        return false;
    }
    let name = &statefulset.metadata.name.clone().unwrap_or_default();
    let on_template = live
        .pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            pod.metadata
                .name
                .as_deref()
                .and_then(|pod_name| names::ordinal_of(name, pod_name))
                .is_some_and(|ordinal| (0..desired).contains(&ordinal))
        })
        .filter(|pod| pod_is_ready(pod))
        .filter(|pod| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_CONTROLLER_REVISION))
                == status.update_revision.as_ref()
        })
        .count();
    usize::try_from(desired).is_ok_and(|desired| on_template == desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(current: &str, previous: Option<&str>) -> Option<NodePasswords> {
        Some(NodePasswords {
            current: current.into(),
            previous: previous.map(str::to_owned),
            revision: Some(format!("rev-{current}")),
        })
    }

    fn found(password: &str) -> Source {
        Source::Found(password.into(), format!("rev-{password}"))
    }

    #[test]
    fn the_node_secret_holds_one_password_per_line() {
        let revision = |r: &str| Some(r.to_owned());
        assert_eq!(
            NodePasswords::parse("new\nold\n", revision("rev-new")),
            node("new", Some("old"))
        );
        assert_eq!(
            NodePasswords::parse("only", revision("rev-only")),
            node("only", None)
        );
        assert_eq!(NodePasswords::parse("", None), None);
        assert_eq!(
            node("new", Some("old")).map(|n| n.all().join(",")),
            Some("new,old".into())
        );
    }

    #[test]
    fn a_first_password_is_written_without_an_event() {
        let plan = plan("demo-auth", found("p1"), None, false, false);
        assert_eq!(plan.write, node("p1", None));
        assert_eq!((plan.problem, plan.event), (None, None));
        let steady = plan_for("p1", node("p1", None), false);
        assert_eq!(steady.write, None);
        assert_eq!(steady.accepted, node("p1", None));
    }

    fn plan_for(password: &str, node: Option<NodePasswords>, rolled_out: bool) -> Plan {
        plan("demo-auth", found(password), node, rolled_out, false)
    }

    #[test]
    fn a_new_password_rolls_out_next_to_the_previous_one_which_is_dropped_once_all_pods_have_it() {
        let changed = plan_for("p2", node("p1", None), false);
        assert_eq!(changed.write, node("p2", Some("p1")));
        assert_eq!(
            changed.event,
            Some((reason::PASSWORD_CHANGED, "the password in Secret demo-auth changed: the pods restart one at a time, and until all run with it every node accepts the new and the previous password, so clients with the previous one keep working. Switch them to the new password after the PasswordRotated event".to_owned()))
        );
        // Still rolling: both stay.
        let rolling = plan_for("p2", node("p2", Some("p1")), false);
        assert_eq!((rolling.write, rolling.event), (None, None));
        assert_eq!(rolling.accepted, node("p2", Some("p1")));
        // Every pod runs the new template: the previous one goes, the revision stays (no
        // second roll).
        let done = plan_for("p2", node("p2", Some("p1")), true);
        assert_eq!(done.write, node("p2", None));
        assert_eq!(done.event.map(|e| e.0), Some(reason::PASSWORD_ROTATED));
        // Changed again mid-roll: the one the newest pods run with becomes the previous one.
        assert_eq!(
            plan_for("p3", node("p2", Some("p1")), false).write,
            node("p3", Some("p2"))
        );
    }

    #[test]
    fn a_node_secret_without_a_revision_gets_the_sources_once() {
        let old = NodePasswords {
            revision: None,
            ..node("p1", None).unwrap_or_else(|| unreachable!())
        };
        let plan = plan_for("p1", Some(old), false);
        assert_eq!(plan.write, node("p1", None));
        assert_eq!(plan.event, None);
    }

    #[test]
    fn a_regenerated_secret_is_announced_as_such() {
        let plan = plan("demo-auth", found("p2"), node("p1", None), false, true);
        assert!(plan
            .event
            .is_some_and(|(reason, note)| reason == reason::PASSWORD_CHANGED
                && note.starts_with(
                    "Secret demo-auth was missing and was generated again with a new password: "
                )));
    }

    #[test]
    fn a_missing_or_unusable_secret_keeps_what_the_nodes_accept() {
        let missing = plan(
            "web-pass",
            Source::Missing("gone".into()),
            node("p1", Some("p0")),
            true,
            false,
        );
        assert_eq!(missing.write, None);
        assert_eq!(missing.accepted, node("p1", Some("p0")));
        assert_eq!(
            missing.problem,
            Some((reason::AUTH_SECRET_MISSING, "gone".to_owned()))
        );
        assert_eq!(
            source_of("web-pass", "pw", b"two\nlines".to_vec(), "r".into()),
            Source::Invalid("the password in Secret web-pass key pw is empty or spans several lines: the nodes keep the password they run with. Put a password of one line there".into())
        );
        assert_eq!(
            source_of("s", "k", b"pw\n".to_vec(), "u-7".into()),
            Source::Found("pw".into(), "u-7".into())
        );
        assert!(matches!(
            source_of("s", "k", b"\n".to_vec(), "r".into()),
            Source::Invalid(_)
        ));
        assert!(matches!(
            source_of("s", "k", vec![0xff], "r".into()),
            Source::Invalid(_)
        ));
    }
}
