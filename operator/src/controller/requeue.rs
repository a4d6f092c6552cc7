//! The last reconcile step: when to look at the cluster again if no watched object changes
//! before. The per-cluster count of unsynced polls lives in the [`Context`].

use std::time::Duration;

use kube::runtime::controller::Action;
use sessionstore_api::constants::condition;
use sessionstore_api::{SessionCluster, SessionClusterStatus};

use super::context::{key, Context, ControllerConfig};
use crate::status;

/// The requeue after a reconcile that wrote `new`: progress (a `Progressing` condition not
/// `False`, or a StatefulSet just written) polls at the progress rate; members not all synced
/// back off from 1 s; a steady cluster is polled slowly.
pub(super) fn next(
    ctx: &Context,
    cluster: &SessionCluster,
    new: &SessionClusterStatus,
    desired: i32,
    wrote_statefulset: bool,
) -> Action {
    let progressing = status::condition_status(&new.conditions, condition::PROGRESSING)
        != Some("False")
        || wrote_statefulset;
    // The backoff counts unsynced polls of a cluster at rest; a rollout or scaling polls at the
    // progress rate and starts the count afresh once it is done.
    let unsynced_polls = match ctx.unsynced_polls.lock() {
        Ok(mut polls) if progressing || status::members_synced(new, desired) => {
            polls.remove(&key(cluster));
            0
        }
        Ok(mut polls) => {
            let count = polls.entry(key(cluster)).or_insert(0);
            *count = count.saturating_add(1);
            *count
        }
        Err(_) => 1,
    };
    Action::requeue(requeue_delay(&ctx.config, progressing, unsynced_polls))
}

/// When to look at a cluster again if no watched object changes before: soon while something is
/// in progress; after 1 s, 2 s, 4 s, ... (bounded) while the members are not all synced, which is
/// how `Clustered` comes back seconds after the peers reconnected to a restarted pod rather than
/// at the next steady poll; slowly when steady (member polling for memory, no API writes).
pub fn requeue_delay(
    config: &ControllerConfig,
    progressing: bool,
    unsynced_polls: u32,
) -> Duration {
    if progressing {
        return config.progress_requeue;
    }
    let Some(doublings) = unsynced_polls.checked_sub(1) else {
        return config.steady_requeue;
    };
    config
        .unsynced_requeue
        .saturating_mul(1 << doublings.min(16))
        .min(config.unsynced_requeue_max)
}
