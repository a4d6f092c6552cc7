//! Telling a cluster that lost every session from one that merely restarted. A node reports how
//! it got the data it started with (`dataOrigin`: from disc, from a peer, or nothing) and a
//! per-process id; the status remembers which processes held keys (`status.data.heldBy`).
//! When every node the spec asks for answers as a process that was not among them and started
//! with nothing, no node carried the data across: the sessions are gone (`SessionsLost`). A
//! rolling restart never looks like that, whatever the operator saw in between, because each
//! restarted node copies its data from a peer that still holds it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sessionstore_api::node_status::data_origin;
use sessionstore_api::{DataStatus, MemberStatus};

/// How long after a loss `Degraded` still says `SessionsLost` (the event stays in the event
/// list for the cluster's event TTL).
pub const SESSIONS_LOST_REPORT_SECONDS: i64 = 600;

/// `status.data` after a poll that found `members`, and whether it found the sessions lost.
pub fn next(
    old: Option<&DataStatus>,
    members: &[MemberStatus],
    desired: i32,
    now: &Time,
) -> (Option<DataStatus>, bool) {
    let mut data = old.cloned().unwrap_or_default();
    let lost = lost(&data, members, desired);
    let holders: Vec<&MemberStatus> = members.iter().filter(|m| m.keys > 0).collect();
    let everyone = usize::try_from(desired).is_ok_and(|desired| members.len() >= desired);
    if lost {
        data.lost_at = Some(now.0.to_string());
        data.lost_keys = data.keys;
    }
    if lost || !holders.is_empty() || (everyone && !members.is_empty()) {
        // Nobody answering, or some nodes answering with nothing while others are still
        // starting (a full restart under way), says nothing about the data: keep what was
        // known, so that the loss is seen once every node has answered.
        data.held_by = holders.iter().map(|m| m.node_id.clone()).collect();
        data.held_by.sort();
        data.keys = holders.iter().map(|m| m.keys).max().unwrap_or(0);
    }
    let empty = data.held_by.is_empty() && data.lost_at.is_none();
    ((!empty).then_some(data), lost)
}

/// Whether every node the spec asks for answers as a new process that started empty, while
/// processes that held keys were known.
fn lost(data: &DataStatus, members: &[MemberStatus], desired: i32) -> bool {
    !data.held_by.is_empty()
        && usize::try_from(desired).is_ok_and(|desired| desired > 0 && members.len() >= desired)
        && members.iter().all(|m| {
            !m.node_id.is_empty()
                && !data.held_by.contains(&m.node_id)
                && m.data_origin.as_deref() == Some(data_origin::EMPTY)
        })
}

/// The `Degraded` message while a loss is recent: when, how much, and what would have kept it.
pub fn lost_message(data: Option<&DataStatus>, ram: bool, now: &Time) -> Option<String> {
    let data = data?;
    let at = data.lost_at.as_ref()?;
    let when: k8s_openapi::jiff::Timestamp = at.parse().ok()?;
    if now.0.as_second() - when.as_second() >= SESSIONS_LOST_REPORT_SECONDS {
        return None;
    }
    let advice = if ram {
        "storage.mode ram keeps sessions only in memory; storage.mode disc survives a restart of every node"
    } else {
        "no node recovered anything from its volume: check that the claims were kept"
    };
    Some(format!(
        "every node restarted at {at} with nothing to recover, so the sessions they held (up to {} keys per node) are lost and clients must create them again; {advice}",
        data.lost_keys
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH
                + k8s_openapi::jiff::SignedDuration::from_secs(seconds),
        )
    }

    fn member(id: &str, keys: u64, origin: &str) -> MemberStatus {
        MemberStatus {
            name: format!("demo-{}", &id[..1]),
            node_id: id.into(),
            keys,
            data_origin: Some(origin.into()),
            ..MemberStatus::default()
        }
    }

    #[test]
    fn a_new_cluster_loses_nothing_and_starts_remembering_once_it_holds_keys() {
        let fresh = [member("0a", 0, "empty"), member("1a", 0, "empty")];
        assert_eq!(next(None, &fresh, 2, &at(0)), (None, false));
        let used = [member("0a", 12, "empty"), member("1a", 12, "empty")];
        let (data, lost) = next(None, &used, 2, &at(1));
        assert!(!lost);
        assert_eq!(
            data,
            Some(DataStatus {
                held_by: vec!["0a".into(), "1a".into()],
                keys: 12,
                ..DataStatus::default()
            })
        );
    }

    #[test]
    fn every_node_restarting_empty_loses_the_sessions_once() {
        let before = next(
            None,
            &[member("0a", 40, "empty"), member("1a", 40, "peer")],
            2,
            &at(0),
        )
        .0;
        // All pods deleted: nobody answers for a while; what was known is kept.
        let (during, lost) = next(before.as_ref(), &[], 2, &at(5));
        assert!(!lost);
        assert_eq!(during, before);
        // Back, as new processes that found nothing to copy (clients already wrote a little).
        let back = [member("0b", 3, "empty"), member("1b", 0, "empty")];
        let (after, lost) = next(during.as_ref(), &back, 2, &at(30));
        assert!(lost);
        let after = after.unwrap_or_default();
        assert_eq!(after.lost_at.as_deref(), Some("1970-01-01T00:00:30Z"));
        assert_eq!(
            (after.lost_keys, after.held_by.clone()),
            (40, vec!["0b".to_owned()])
        );
        // The next poll sees the same processes: no second loss.
        assert!(!next(Some(&after), &back, 2, &at(35)).1);
        assert_eq!(
            lost_message(Some(&after), true, &at(60)).as_deref(),
            Some("every node restarted at 1970-01-01T00:00:30Z with nothing to recover, so the sessions they held (up to 40 keys per node) are lost and clients must create them again; storage.mode ram keeps sessions only in memory; storage.mode disc survives a restart of every node")
        );
        assert_eq!(
            lost_message(Some(&after), true, &at(30 + SESSIONS_LOST_REPORT_SECONDS)),
            None
        );
    }

    /// A full restart seen mid-way: the first node back answers empty while the other is still
    /// starting. That says nothing yet; once both answered, new and empty, the loss is seen.
    #[test]
    fn a_full_restart_answered_node_by_node_is_still_seen_as_a_loss() {
        let before = next(
            None,
            &[member("0a", 40, "empty"), member("1a", 40, "peer")],
            2,
            &at(0),
        )
        .0;
        let (midway, lost) = next(before.as_ref(), &[member("0b", 0, "empty")], 2, &at(10));
        assert!(!lost);
        assert_eq!(midway, before);
        let back = [member("0b", 0, "empty"), member("1b", 0, "empty")];
        let (after, lost) = next(midway.as_ref(), &back, 2, &at(20));
        assert!(lost);
        let after = after.unwrap_or_default();
        assert_eq!((after.lost_keys, after.held_by.len()), (40, 0));
        // Nothing is held any more: the next poll finds no second loss.
        assert!(!next(Some(&after), &back, 2, &at(25)).1);
    }

    #[test]
    fn a_rolling_restart_or_a_partial_answer_loses_nothing() {
        let before = next(
            None,
            &[member("0a", 40, "empty"), member("1a", 40, "peer")],
            2,
            &at(0),
        )
        .0;
        // Both restarted between two polls, each copying from the other: new ids, data from a peer.
        let rolled = [member("0b", 40, "peer"), member("1b", 40, "peer")];
        assert!(!next(before.as_ref(), &rolled, 2, &at(10)).1);
        // Only one node answered yet: the other may still hold the data.
        assert!(!next(before.as_ref(), &[member("0b", 0, "empty")], 2, &at(10)).1);
        // A node of an older version that does not say where its data came from.
        let unknown = [
            MemberStatus {
                data_origin: None,
                ..member("0b", 0, "empty")
            },
            member("1b", 0, "empty"),
        ];
        assert!(!next(before.as_ref(), &unknown, 2, &at(10)).1);
        // A disc cluster after a full restart: recovered.
        let recovered = [member("0b", 40, "disc"), member("1b", 40, "disc")];
        assert!(!next(before.as_ref(), &recovered, 2, &at(10)).1);
    }
}
