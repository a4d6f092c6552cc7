//! How a starting node becomes ready, by the first-start rule of [`super::membership`]: it
//! seeds an empty cluster, catches up with its peers by anti-entropy, or streams a snapshot
//! from one ready peer and then reconciles with every ready peer; before it reports ready it
//! waits for its ready peers to dial it back. Also the peer's side of bootstrap: serving a
//! snapshot over an inbound link.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::anti_entropy::run_rounds;
use super::link::error::LinkError;
use super::link::outbox::{send_records, Outbox};
use super::membership::{decide_start, StartDecision, StartPeer};
use super::metrics::ReplicationMetrics;
use super::shared::{all_peers_connected, connected_ready_peers, set_state, LinkCommand, Shared};
use super::wire::{Message, NodeState};

/// Applies the first-start rule until the node is ready.
pub(crate) async fn bootstrap(shared: Arc<Shared>) {
    let started = Instant::now();
    // Data held at start (recovered from disc), not what the live streams bring meanwhile:
    // those would otherwise turn an empty node into one that skips its snapshot.
    let had_data = !shared.replica.is_empty();
    let mut last_reason = String::new();
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let peers = connected_ready_peers(&shared);
        let views: Vec<StartPeer> = peers.iter().map(|(_, peer, _)| peer.clone()).collect();
        let decision = decide_start(
            &shared.config.node_name,
            had_data,
            shared.resolver.has_sources(),
            &views,
            all_peers_connected(&shared),
            started.elapsed() >= shared.config.first_start_wait,
        );
        let round_timeout = shared.config.peer_timeout * 4;
        match decision {
            StartDecision::Seed(reason) => {
                wait_for_clock(&shared).await;
                info!(node = %shared.config.node_name, %reason, "ready");
                set_state(&shared, NodeState::Ready, None);
                return;
            }
            StartDecision::CatchUp => {
                *shared.reason.lock() = Some("loading: catching up with peers".into());
                let rounds = run_rounds(&shared, round_timeout).await;
                wait_for_links_back(&shared).await;
                wait_for_clock(&shared).await;
                info!(node = %shared.config.node_name, rounds, "caught up with peers; ready");
                set_state(&shared, NodeState::Ready, None);
                return;
            }
            StartDecision::Bootstrap(source) => {
                *shared.reason.lock() =
                    Some(format!("loading: streaming a snapshot from {source}"));
                info!(node = %shared.config.node_name, %source, "bootstrapping from a snapshot");
                let Some((_, _, commands)) = peers.iter().find(|(_, peer, _)| peer.name == source)
                else {
                    continue;
                };
                let (reply, wait) = oneshot::channel();
                if commands.send(LinkCommand::Snapshot(reply)).is_err() {
                    continue;
                }
                match wait.await {
                    Ok(records) => {
                        *shared.reason.lock() = Some(format!("loading: snapshot of {records} records received, reconciling with peers"));
                        let rounds = run_rounds(&shared, round_timeout).await;
                        wait_for_links_back(&shared).await;
                        wait_for_clock(&shared).await;
                        info!(node = %shared.config.node_name, records, rounds, "bootstrap complete; ready");
                        set_state(&shared, NodeState::Ready, None);
                        return;
                    }
                    Err(_) => {
                        warn!(node = %shared.config.node_name, %source, "snapshot interrupted; retrying");
                    }
                }
            }
            StartDecision::Wait(reason) => {
                if reason != last_reason {
                    info!(node = %shared.config.node_name, %reason, "waiting before serving");
                    last_reason = reason.clone();
                }
                *shared.reason.lock() = Some(format!("loading: {reason}"));
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Before a starting node reports ready: waits, at most `links_back_wait`, until every
/// connected ready peer has dialed this node too. A peer's writes reach this node only over
/// that link, so until it is up the peer cannot count this node for `--write-ack`. A rolling
/// restart stops the next node as soon as this one is ready: if this node were ready before
/// the links back, a peer that just lost the stopped node could have no member acknowledging
/// its writes and answer `NOREPLICAS` (the e2e rolling restart shows it: a restarted pod has a
/// new address that peers learn only from DNS).
async fn wait_for_links_back(shared: &Shared) {
    let deadline = Instant::now() + shared.config.links_back_wait;
    loop {
        let missing: Vec<String> = connected_ready_peers(shared)
            .into_iter()
            .filter(|(_, peer, _)| peer.state == NodeState::Ready)
            .map(|(_, peer, _)| peer.name)
            .filter(|name| !shared.inbound.lock().contains_key(name))
            .collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            warn!(peers = ?missing, "ready although these peers have not connected back: their clients may get NOREPLICAS until they do");
            return;
        }
        *shared.reason.lock() = Some(format!(
            "loading: waiting for {} to connect back",
            missing.join(", ")
        ));
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Before a starting node reports ready: waits, at most three heartbeats, until it measured
/// the clock of every connected peer, so that its first local write is already stamped by
/// cluster time (see `super::clock`) if its own clock is off.
async fn wait_for_clock(shared: &Shared) {
    let deadline = Instant::now() + shared.config.heartbeat_interval * 3;
    loop {
        let unmeasured: Vec<String> = {
            let peers = shared.peers.lock();
            peers
                .by_address
                .values()
                .filter(|entry| entry.connected && !entry.left && entry.clock.offset_ms().is_none())
                .map(|entry| entry.name.clone().unwrap_or_default())
                .collect()
        };
        if unmeasured.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            warn!(peers = ?unmeasured, "ready before these peers' clocks were measured");
            return;
        }
        *shared.reason.lock() = Some(format!(
            "loading: measuring the clocks of {}",
            unmeasured.join(", ")
        ));
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// The peer's side of bootstrap: streams every record to a bootstrapping node over its inbound
/// link, then `SnapshotEnd` with the log head at the start.
pub(crate) async fn serve_snapshot(
    shared: &Shared,
    peer: &str,
    outbox: &Outbox,
) -> Result<(), LinkError> {
    let head = shared.log.head();
    info!(peer = %peer, head, "serving a snapshot");
    let mut cursor: Option<Vec<u8>> = None;
    let mut total = 0usize;
    loop {
        let (records, next) = shared
            .replica
            .snapshot_chunk(cursor.as_deref(), shared.config.chunk_records.max(1));
        total += records.len();
        if !records.is_empty() {
            send_records(shared, outbox, records, true).await?;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    outbox.bulk(Message::SnapshotEnd { seq: head }).await?;
    ReplicationMetrics::add(&shared.metrics.snapshots_served, 1);
    info!(peer = %peer, records = total, "snapshot served");
    Ok(())
}
