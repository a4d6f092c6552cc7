//! Anti-entropy rounds: the dialer of a link sends its 256 bucket digests, the acceptor
//! answers with the `(key, state hash)` lists of the buckets that differ ([`answer_digest`]),
//! the dialer pushes the whole state of every key whose hash differs or the peer lacks, asks
//! for the peer's states of every key whose hash differs or it lacks ([`Round`]'s repair task;
//! merging is idempotent, so a key sent both ways converges) and ends the round. A completed round proves the peer holds the dialer's log up to the
//! round's start, which closes the gap a peer has after it fell off the bounded log or
//! restarted, and lets tombstones older than the round be collected.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::link::error::LinkError;
use super::link::outbox::{send_records, AbortOnDrop, Outbox};
use super::metrics::ReplicationMetrics;
use super::shared::{
    bump_acks, connected_ready_peers, held_by_every_member, wall_ms, LinkCommand, Shared,
};
use super::wire::Message;
use crate::store::digest::BUCKETS;

/// Buckets listed per pass over the keyspace in an anti-entropy round: a round where every
/// bucket differs makes 8 passes and holds about an eighth of the key list at a time. One pass
/// per bucket would make 256, which at 1M keys outlasts the peer timeout.
const LIST_GROUP: usize = 32;

/// The dialer's side of one round on a link, from the digests sent to the peer's `RoundEnd`.
pub(crate) struct Round {
    /// The log head when the round started: a completed round proves the peer holds it.
    horizon: u64,
    /// Wall ms at the start, for the tombstone collection cutoff.
    started_ms: u64,
    /// The peer's keys of the differing buckets, as they arrive.
    theirs: BTreeMap<u16, Vec<(Bytes, u64)>>,
    /// Whether the repair task started (the peer's lists are complete) and the round now only
    /// waits for the peer's `RoundEnd`.
    waiting_for_end: bool,
    /// The task comparing and repairing, once the peer's lists are in.
    repair: Option<AbortOnDrop<()>>,
}

impl Round {
    /// Starts a round: sends this node's bucket digests to the peer.
    pub(crate) fn start(shared: &Shared, outbox: &Outbox) -> Round {
        let horizon = shared.log.head();
        let started_ms = wall_ms(shared);
        let buckets = shared.replica.bucket_digests();
        outbox.urgent(Message::Digest { buckets });
        Round {
            horizon,
            started_ms,
            theirs: BTreeMap::new(),
            waiting_for_end: false,
            repair: None,
        }
    }

    /// Takes in one `BucketKeys` message; the last one (`done`) starts the repair task, which
    /// reports its failure on `failures`.
    pub(crate) fn bucket_keys(
        &mut self,
        shared: &Arc<Shared>,
        outbox: &Outbox,
        failures: &mpsc::UnboundedSender<LinkError>,
        bucket: u16,
        keys: Vec<(Bytes, u64)>,
        done: bool,
    ) {
        if !done {
            self.theirs.entry(bucket).or_default().extend(keys);
            return;
        }
        let theirs = std::mem::take(&mut self.theirs);
        self.waiting_for_end = true;
        let (shared, outbox, failures) = (shared.clone(), outbox.clone(), failures.clone());
        self.repair = Some(AbortOnDrop(tokio::spawn(async move {
            if let Err(error) = repair(&shared, &outbox, theirs).await {
                let _ = failures.send(error);
            }
        })));
    }

    /// Whether the peer's `RoundEnd` completes this round (its repair task started).
    pub(crate) fn waiting_for_end(&self) -> bool {
        self.waiting_for_end
    }

    /// Records the completed round with the peer `name` at `address`: the peer holds the log up
    /// to the round's horizon, and the tombstone cutoff may move to the round's start.
    pub(crate) fn complete(&self, shared: &Shared, name: &str, address: &str) {
        {
            let mut peers = shared.peers.lock();
            if let Some((_, cursor)) = peers.cursors.get_mut(name) {
                cursor.synced_to(self.horizon);
            }
            if let Some(entry) = peers.by_address.get_mut(address) {
                entry.last_round_started_ms = Some(self.started_ms);
                if let Some(node_id) = entry.node_id {
                    peers.rounds_completed.insert((name.to_string(), node_id));
                }
            }
            shared.log.release_through(held_by_every_member(&peers));
        }
        ReplicationMetrics::add(&shared.metrics.anti_entropy_rounds, 1);
        bump_acks(shared);
    }
}

/// Runs one anti-entropy round with every connected peer that is ready or loading with data
/// of its own ([`round_partner`](super::membership::StartPeer::round_partner)), bounded by `timeout`; returns how many completed.
pub(crate) async fn run_rounds(shared: &Shared, timeout: Duration) -> usize {
    let mut waits = Vec::new();
    for (_, peer, commands) in connected_ready_peers(shared) {
        if !peer.round_partner() {
            continue;
        }
        let (reply, wait) = oneshot::channel();
        if commands.send(LinkCommand::Round(reply)).is_ok() {
            waits.push(wait);
        }
    }
    match tokio::time::timeout(timeout, futures::future::join_all(waits)).await {
        Ok(results) => results.into_iter().filter(|result| result.is_ok()).count(),
        Err(_) => 0,
    }
}

/// Lists the keys of `buckets` on the blocking pool: one pass over the whole keyspace, which at
/// 1M keys on a loaded machine takes seconds that the link's tasks must spend on heartbeats.
async fn list_buckets(
    shared: &Shared,
    peer: &str,
    buckets: Vec<usize>,
) -> Result<Vec<Vec<(Bytes, u64)>>, LinkError> {
    let replica = shared.replica.clone();
    tokio::task::spawn_blocking(move || replica.bucket_keys(&buckets))
        .await
        .map_err(|source| LinkError::ListKeys {
            peer: peer.to_string(),
            source,
        })
}

/// The acceptor's side: answers a round's digests with the `(key, state hash)` lists of the
/// differing buckets, listed a group at a time on the blocking pool.
pub(crate) async fn answer_digest(
    shared: &Shared,
    outbox: &Outbox,
    buckets: &[u64],
) -> Result<(), LinkError> {
    let mine = shared.replica.bucket_digests();
    let differing: Vec<usize> = (0..BUCKETS)
        .filter(|bucket| buckets.get(*bucket) != mine.get(*bucket))
        .collect();
    for group in differing.chunks(LIST_GROUP) {
        let lists = list_buckets(shared, outbox.peer(), group.to_vec()).await?;
        for (&bucket, keys) in group.iter().zip(lists) {
            // Chunked so one huge bucket cannot exceed the frame limit.
            let mut chunks = keys
                .chunks(shared.config.chunk_records.max(1) * 4)
                .peekable();
            if chunks.peek().is_none() {
                outbox
                    .bulk(Message::BucketKeys {
                        bucket: bucket as u16,
                        keys: Vec::new(),
                        done: false,
                    })
                    .await?;
            }
            for chunk in chunks {
                outbox
                    .bulk(Message::BucketKeys {
                        bucket: bucket as u16,
                        keys: chunk.to_vec(),
                        done: false,
                    })
                    .await?;
            }
        }
    }
    outbox
        .bulk(Message::BucketKeys {
            bucket: 0,
            keys: Vec::new(),
            done: true,
        })
        .await
}

/// Compares the peer's keys of the differing buckets with ours: pushes every key whose state
/// differs or they lack, asks for every key whose state differs or we lack, then ends the
/// round. Runs in a task of
/// its own, a group of buckets at a time, listing and comparing on the blocking pool; the link
/// keeps reading (the answers to its requests, heartbeats) meanwhile.
async fn repair(
    shared: &Shared,
    outbox: &Outbox,
    theirs: BTreeMap<u16, Vec<(Bytes, u64)>>,
) -> Result<(), LinkError> {
    let mut theirs = theirs.into_iter().peekable();
    while theirs.peek().is_some() {
        let group: Vec<(u16, Vec<(Bytes, u64)>)> = theirs.by_ref().take(LIST_GROUP).collect();
        let replica = shared.replica.clone();
        let (records, want) = tokio::task::spawn_blocking(move || {
            let buckets: Vec<usize> = group.iter().map(|(bucket, _)| *bucket as usize).collect();
            let lists = replica.bucket_keys(&buckets);
            let (mut push, mut want) = (Vec::new(), Vec::new());
            for ((_, their_keys), mine) in group.iter().zip(lists) {
                compare_bucket(mine, their_keys, &mut push, &mut want);
            }
            (replica.read_records(&push), want)
        })
        .await
        .map_err(|source| LinkError::CompareKeys {
            peer: outbox.peer().to_string(),
            source,
        })?;
        if !records.is_empty() {
            ReplicationMetrics::add(&shared.metrics.repairs_sent, records.len() as u64);
            send_records(shared, outbox, records, false).await?;
        }
        for keys in want.chunks(shared.config.chunk_records.max(1) * 4) {
            outbox
                .bulk(Message::RepairRequest {
                    keys: keys.to_vec(),
                })
                .await?;
        }
    }
    outbox.bulk(Message::RoundEnd).await
}

/// One bucket of a round: the keys to push (a different state, or theirs absent) and to
/// request (a different state, or ours absent). States are not ordered (each may hold writes
/// the other lacks), so a differing key goes both ways and each side merges the other's.
fn compare_bucket(
    mine: Vec<(Bytes, u64)>,
    theirs: &[(Bytes, u64)],
    push: &mut Vec<Bytes>,
    want: &mut Vec<Bytes>,
) {
    let mine: HashMap<Bytes, u64> = mine.into_iter().collect();
    let their_map: HashMap<&Bytes, u64> = theirs
        .iter()
        .map(|(key, version)| (key, *version))
        .collect();
    for (key, version) in &mine {
        if their_map.get(key) != Some(version) {
            push.push(key.clone());
        }
    }
    for (key, version) in theirs {
        if mine.get(key) != Some(version) {
            want.push(key.clone());
        }
    }
}
