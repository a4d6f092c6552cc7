//! Network faults between peers, through a real fault proxy (toxiproxy, installed by
//! `hack/toxiproxy.sh` from the Go module proxy): three ram nodes with `--write-ack one`
//! whose every peer link goes through a proxy, one writer per node adding fresh keys the whole
//! time, and in turn: a partition, a one-way partition, 200 ms of latency, a link starved of
//! bandwidth, and connections reset in the middle of batches.
//!
//! Promise checked after each fault is healed: every acknowledged write is on every node
//! (within 60 s; in practice the anti-entropy interval, 2 s here, plus a reconnection), and
//! the writes on the majority side keep being acknowledged during the fault. Each scenario
//! prints its figures (`figures:` lines): writes acknowledged, not acknowledged (with the
//! errors clients saw), lost, and the time from the heal until every node held every
//! acknowledged write.

mod fault_support;

use std::time::Duration;

use fault_support::{check_every_node, pair, Figures, ProxiedCluster, Stream, Workload};
use serde_json::json;

/// How long each fault lasts while the writers run: longer than the peer timeout (5 s), so
/// links time out and are redialled.
const FAULT: Duration = Duration::from_secs(7);

/// Runs `inject` for [`FAULT`] under writes on every node, heals, and checks.
fn scenario(cluster: &ProxiedCluster, name: &str, inject: impl FnOnce(&ProxiedCluster)) {
    let workload = Workload::start(name, &cluster.nodes, 100_000);
    std::thread::sleep(Duration::from_millis(500));
    inject(cluster);
    let during = workload.acknowledged();
    std::thread::sleep(FAULT);
    let acknowledged_during_fault = workload.acknowledged() - during;
    cluster.proxy.heal();
    let healed = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let history = workload.finish();
    let nodes: Vec<_> = cluster.nodes.iter().collect();
    let checking = healed.elapsed();
    let (checked_in, lost) =
        check_every_node(&nodes, &history.acknowledged, Duration::from_secs(60));
    // An upper bound: the first check runs once the writers stopped, half a second after
    // the heal.
    let converged_in = checking + checked_in;
    Figures {
        scenario: name,
        history: &history,
        lost: &lost,
        converged_in,
        extra: format!("{acknowledged_during_fault} writes acknowledged during the fault"),
    }
    .print();
    assert_eq!(
        lost,
        vec![0; nodes.len()],
        "{name}: acknowledged writes lost"
    );
    assert!(
        acknowledged_during_fault > 0,
        "{name}: no write acknowledged during the fault"
    );
}

#[test]
fn every_acknowledged_write_survives_network_faults() {
    let cluster = ProxiedCluster::start(3, &["--write-ack", "one"]);
    let others = [1, 2];

    scenario(&cluster, "partition {d-0} | {d-1, d-2}", |cluster| {
        for other in others {
            cluster.proxy.set_enabled(&pair(0, other), false);
            cluster.proxy.set_enabled(&pair(other, 0), false);
        }
    });

    // Everything d-0 sends is held; what the others send reaches it.
    scenario(
        &cluster,
        "one-way partition: d-0 -> others dropped",
        |cluster| {
            let hold = || json!({ "timeout": 0 });
            for other in others {
                let proxy = &cluster.proxy;
                proxy.add_toxic(&pair(0, other), "hold", "timeout", Stream::Upstream, hold());
                proxy.add_toxic(
                    &pair(other, 0),
                    "hold",
                    "timeout",
                    Stream::Downstream,
                    hold(),
                );
            }
        },
    );

    scenario(&cluster, "200 ms latency on every link", |cluster| {
        for from in 0..3 {
            for to in (0..3).filter(|to| *to != from) {
                for (toxic, stream) in [
                    ("slow-up", Stream::Upstream),
                    ("slow-down", Stream::Downstream),
                ] {
                    cluster.proxy.add_toxic(
                        &pair(from, to),
                        toxic,
                        "latency",
                        stream,
                        json!({ "latency": 200, "jitter": 20 }),
                    );
                }
            }
        }
    });

    scenario(&cluster, "d-0's links starved to 16 KB/s", |cluster| {
        for other in others {
            for (proxy, stream) in [
                (pair(0, other), Stream::Upstream),
                (pair(other, 0), Stream::Downstream),
            ] {
                cluster.proxy.add_toxic(
                    &proxy,
                    "starve",
                    "bandwidth",
                    stream,
                    json!({ "rate": 16 }),
                );
            }
        }
    });

    // Every connection is cut after 20000 bytes from its dialer: in the middle of a batch.
    scenario(&cluster, "connections reset mid-batch", |cluster| {
        for from in 0..3 {
            for to in (0..3).filter(|to| *to != from) {
                cluster.proxy.add_toxic(
                    &pair(from, to),
                    "cut",
                    "limit_data",
                    Stream::Upstream,
                    json!({ "bytes": 20_000 }),
                );
            }
        }
    });
}
