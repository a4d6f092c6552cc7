//! Peer discovery: resolves the peer addresses every `discovery_interval` (or at once when an
//! unknown peer dials in) and reconciles the peer table with them, starting an outgoing link
//! for every new address and stopping the link of every address no longer listed.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::link::outbound::run_link;
use super::shared::{bump_acks, PeerEntry, Shared};

/// Resolves and reconciles peers until shutdown.
pub(crate) async fn discovery_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.discovery_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.discover_now.notified() => {}
        }
        match shared.resolver.resolve().await {
            Ok(addresses) => reconcile_peers(&shared, addresses),
            // The previous list is kept: a DNS hiccup must not drop every peer.
            Err(error) => warn!(%error, "peer discovery failed; keeping the previous peer list"),
        }
        release_without_members(&shared);
    }
}

/// With no member to send it to (a one-node cluster, or every peer gone), the op-log keeps
/// nothing: acknowledgements release it otherwise, and without them it would grow to its bound
/// (64 MiB) on a node that may have less memory than that. A peer that appears later starts at
/// the head with a gap that anti-entropy closes, as after an overflow.
fn release_without_members(shared: &Shared) {
    let peers = shared.peers.lock();
    if peers.by_address.values().all(|entry| entry.left) {
        drop(peers);
        shared.log.release_through(shared.log.head());
    }
}

/// Makes the peer table hold exactly `addresses` (this node's own excluded).
fn reconcile_peers(shared: &Arc<Shared>, addresses: BTreeSet<String>) {
    let mut changed = false;
    let mut peers = shared.peers.lock();
    let wanted: BTreeSet<String> = addresses
        .into_iter()
        .filter(|address| !peers.self_addresses.contains(address))
        .collect();
    let gone: Vec<String> = peers
        .by_address
        .keys()
        .filter(|address| !wanted.contains(*address))
        .cloned()
        .collect();
    for address in gone {
        if let Some(entry) = peers.by_address.remove(&address) {
            info!(peer = %address, name = ?entry.name, "peer no longer discovered");
            entry.cancel.cancel();
            changed = true;
        }
    }
    for address in wanted {
        if peers.by_address.contains_key(&address) {
            continue;
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let cancel = shared.shutdown.child_token();
        peers.by_address.insert(
            address.clone(),
            PeerEntry {
                name: None,
                node_id: None,
                connected: false,
                state: None,
                has_data: false,
                last_seen: None,
                left: false,
                memory_alarm: false,
                last_round_started_ms: None,
                clock: Default::default(),
                commands,
                cancel: cancel.clone(),
            },
        );
        info!(peer = %address, "peer discovered");
        tokio::spawn(run_link(shared.clone(), address, receiver, cancel));
        changed = true;
    }
    drop(peers);
    if changed {
        bump_acks(shared);
    }
}
