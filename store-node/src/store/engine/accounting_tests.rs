//! Tests of memory accounting: watermarks and hysteresis, the reserve, used memory from
//! footprint samples, peers' alarms, request room, and eviction.

use std::sync::Arc;

use bytes::Bytes;

use super::super::testing::put;
use super::*;
use crate::store::hook::testing::RecordingHook;
use crate::store::hook::Versioning;

/// A limit whose effective part (without the reserve, a quarter of so small a limit) is
/// 100,002 bytes: the watermarks are 80,001 and 50,001.
#[test]
fn alarm_with_hysteresis_and_eviction() {
    let config = EngineConfig {
        limit_bytes: 133_336,
        high_watermark: 0.8,
        low_watermark: 0.5,
        policy: EvictionPolicy::Noeviction,
    };
    let engine = MemoryEngine::new(config);
    let now = unix_ms();
    let mut index = 0;
    while engine.make_room() {
        let _ = engine.apply(&put(&format!("k{index}"), &"x".repeat(100), None), now);
        index += 1;
    }
    assert!(engine.memory().alarm);
    assert!(engine.used_bytes() >= 80_000);
    // Below high but above low: still refused (hysteresis).
    let mut removed = 0;
    while engine.used_bytes() >= 75_000 {
        let _ = engine.apply(
            &Op::Delete {
                key: Bytes::from(format!("k{removed}")),
            },
            now,
        );
        removed += 1;
    }
    assert!(!engine.make_room());
    while engine.used_bytes() >= 50_000 {
        let _ = engine.apply(
            &Op::Delete {
                key: Bytes::from(format!("k{removed}")),
            },
            now,
        );
        removed += 1;
    }
    assert!(!engine.memory().alarm);
    assert!(engine.make_room());

    let engine = MemoryEngine::new(EngineConfig {
        policy: EvictionPolicy::VolatileTtl,
        ..config
    });
    for index in 0..2000 {
        assert!(engine.make_room(), "eviction should make room at {index}");
        let _ = engine.apply(
            &put(
                &format!("k{index}"),
                &"x".repeat(100),
                Some(now + 60_000 + index),
            ),
            now,
        );
    }
    assert!(engine.stats().evicted > 0);
    assert!(engine.used_bytes() < 82_000);
}

#[test]
fn the_reserve_is_an_eighth_of_the_limit_within_its_bounds() {
    const MIB: u64 = 1 << 20;
    assert_eq!(memory_reserve(0), 0);
    assert_eq!(memory_reserve(300_000), 75_000);
    assert_eq!(memory_reserve(64 * MIB), 16 * MIB);
    assert_eq!(memory_reserve(256 * MIB), 32 * MIB);
    assert_eq!(memory_reserve(1024 * MIB), 128 * MIB);
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 64 * MIB,
        ..EngineConfig::default()
    });
    let memory = engine.memory();
    assert_eq!(memory.reserve_bytes, 16 * MIB);
    assert_eq!(
        memory.high_watermark_bytes,
        (48.0 * MIB as f64 * 0.8) as u64
    );
    assert_eq!(memory.low_watermark_bytes, (48.0 * MIB as f64 * 0.7) as u64);
}

/// Used memory follows the sampled footprint, plus twice the growth accounted since the
/// sample (data and buffers), minus what was freed since.
#[test]
fn used_memory_is_the_sample_plus_twice_the_growth_since() {
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 10_000_000,
        ..EngineConfig::default()
    });
    let now = unix_ms();
    let _ = engine.apply(&put("a", &"x".repeat(1000), None), now);
    let data = engine.memory().data_bytes;
    assert_eq!(
        engine.used_bytes(),
        data,
        "the data estimate before any sample"
    );
    engine.set_footprint_sample(5_000_000, engine.footprint_checkpoint());
    assert_eq!(engine.used_bytes(), 5_000_000);
    let _ = engine.apply(&put("b", &"x".repeat(1000), None), now);
    let grown = engine.memory().data_bytes - data;
    assert_eq!(engine.used_bytes(), 5_000_000 + 2 * grown);
    engine.add_buffer_bytes(4096);
    assert_eq!(engine.used_bytes(), 5_000_000 + 2 * (grown + 4096));
    assert_eq!(engine.memory().buffer_bytes, 4096);
    engine.add_buffer_bytes(-4096);
    for key in ["a", "b"] {
        let _ = engine.apply(
            &Op::Delete {
                key: Bytes::from(key),
            },
            now,
        );
    }
    assert_eq!(
        engine.used_bytes(),
        5_000_000 - data,
        "freed bytes count once"
    );
    // The alarm follows the samples: raised at the high watermark, cleared below the low.
    let high = engine.memory().high_watermark_bytes;
    engine.set_footprint_sample(high, engine.footprint_checkpoint());
    assert!(engine.memory().alarm);
    assert!(!engine.make_room());
    engine.set_footprint_sample(engine.memory().low_watermark_bytes, 0);
    assert!(engine.memory().alarm, "hysteresis");
    engine.set_footprint_sample(engine.memory().low_watermark_bytes - 1, 0);
    assert!(!engine.memory().alarm);
    assert!(engine.make_room());
}

/// A peer's alarm refuses growth writes under `noeviction`; an evicting policy evicts two
/// keys per write instead, down to the data floor, and then lets writes proceed (the peer's
/// own eviction keeps its footprint down).
#[test]
fn a_peer_alarm_refuses_or_evicts() {
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 10_000_000,
        ..EngineConfig::default()
    });
    engine.set_peer_alarm(true);
    assert!(engine.memory().peer_alarm);
    assert!(!engine.memory().alarm);
    assert!(!engine.make_room());
    engine.set_peer_alarm(false);
    assert!(engine.make_room());

    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 10_000_000,
        policy: EvictionPolicy::VolatileLru,
        ..EngineConfig::default()
    });
    let now = unix_ms();
    let value = "v".repeat(200_000);
    for index in 0..8 {
        let _ = engine.apply(&put(&format!("k{index}"), &value, Some(now + 60_000)), now);
    }
    let floor = engine.memory().low_watermark_bytes / DATA_FLOOR_DIVISOR;
    assert_eq!(floor, 656_250);
    engine.set_peer_alarm(true);
    for evicted in [2, 4, 6, 6, 6] {
        assert!(engine.make_room());
        assert_eq!(engine.stats().evicted, evicted);
    }
    assert!(engine.memory().data_bytes < floor);
}

/// The room for a request's declared bytes: what is left under the effective limit,
/// divided by the cost factor.
#[test]
fn request_room_is_what_fits_under_the_effective_limit() {
    const MIB: u64 = 1 << 20;
    let unlimited = MemoryEngine::new(EngineConfig::default());
    assert_eq!(unlimited.request_room(), u64::MAX);
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 64 * MIB,
        ..EngineConfig::default()
    });
    engine.set_footprint_sample(8 * MIB, engine.footprint_checkpoint());
    assert_eq!(engine.request_room(), (48 - 8) * MIB / VALUE_COST_FACTOR);
    // A 10 MiB value does not fit a 64 MiB node.
    assert!(engine.request_room() < 10 * MIB);
    engine.set_footprint_sample(60 * MIB, engine.footprint_checkpoint());
    assert_eq!(engine.request_room(), 0);
}

/// An eviction under replicated versioning is a replicated delete: it leaves a tombstone,
/// hands it to the hook, and the tombstone costs nothing against the limit, so evicting keys
/// as small as their tombstones still makes progress and the alarm clears at the low
/// watermark. The client whose write made room does not wait for the eviction.
#[test]
fn eviction_replicates_a_tombstone_outside_the_budget() {
    let engine = Arc::new(MemoryEngine::new(EngineConfig {
        limit_bytes: 133_336,
        high_watermark: 0.8,
        low_watermark: 0.5,
        policy: EvictionPolicy::VolatileTtl,
    }));
    let hook = Arc::new(RecordingHook::new(Versioning::Replicated));
    assert!(engine.set_hook(hook.clone()));
    let now = unix_ms();
    // A one-byte value costs as much as the tombstone that replaces it when evicted.
    let (mut raised, mut cleared, mut alarm) = (0, 0, false);
    for index in 0..5000u64 {
        assert!(engine.make_room(), "no room at {index}");
        let was = alarm;
        alarm = engine.memory().alarm;
        if alarm != was {
            assert!(alarm || engine.used_bytes() < 50_000);
            *(if alarm { &mut raised } else { &mut cleared }) += 1;
        }
        let before = hook.recorded().local.len() as u64;
        let receipt = engine.apply(
            &put(&format!("k{index}"), "x", Some(now + 60_000 + index)),
            now,
        );
        // The receipt is the put's own record, never an eviction's.
        assert_eq!(receipt.replicated, Some((before + 1, before + 1)));
    }
    let stats = engine.stats();
    let memory = engine.memory();
    // Raised at the high watermark, cleared at the low one by eviction, more than once.
    assert!(
        raised >= 2 && cleared >= 2,
        "raised {raised}, cleared {cleared}"
    );
    assert!(stats.evicted > 3000, "evicted {}", stats.evicted);
    assert_eq!(stats.keys, 5000 - stats.evicted);
    assert!(memory.used_bytes < 80_000, "used {}", memory.used_bytes);
    assert!(
        memory.tombstone_bytes > 100_000,
        "tombstones {}",
        memory.tombstone_bytes
    );
    // Every write and every eviction went to the hook, nothing else.
    assert_eq!(hook.recorded().local.len() as u64, 5000 + stats.evicted);
    // Each evicted key is a tombstone, absent to reads.
    let evicted: Vec<Bytes> = (0..5000)
        .map(|index| Bytes::from(format!("k{index}")))
        .filter(|key| engine.key(key).get().is_none())
        .collect();
    assert_eq!(evicted.len() as u64, stats.evicted);
    let records = engine.read_records(&evicted);
    assert_eq!(records.len(), evicted.len());
    assert!(records.iter().all(|record| record.is_tombstone()));
}

/// With footprint samples, under an evicting policy: the alarm rises at a sample and sets a
/// data target (the data minus what the footprint exceeds the low watermark by); writes evict
/// down to it and no further, and the alarm stays raised until a sample below the low
/// watermark, however far evictions lowered the accounted figure. The target follows the
/// footprint: down when it grows, up when it falls below the high watermark.
#[test]
fn with_samples_eviction_stops_at_the_target_and_the_alarm_clears_at_a_sample() {
    const MIB: u64 = 1 << 20;
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 64 * MIB,
        policy: EvictionPolicy::VolatileLru,
        ..EngineConfig::default()
    });
    let now = unix_ms();
    let value = "v".repeat(1024);
    for index in 0..20_000 {
        let _ = engine.apply(&put(&format!("k{index}"), &value, Some(now + 60_000)), now);
    }
    let data = engine.memory().data_bytes;
    let (high, low) = (
        engine.memory().high_watermark_bytes,
        engine.memory().low_watermark_bytes,
    );
    let sample = high + MIB;
    engine.set_footprint_sample(sample, engine.footprint_checkpoint());
    assert!(engine.memory().alarm);
    let target = data - (sample - low);
    for _ in 0..100 {
        assert!(engine.make_room());
    }
    let evicted = engine.stats().evicted;
    let after = engine.memory();
    assert!(after.data_bytes <= target && after.data_bytes + 1200 > target);
    assert!(after.used_bytes <= low, "used {}", after.used_bytes);
    assert!(after.alarm, "the alarm waits for a sample");
    // Writes fill what was freed, up to the target, without evicting.
    assert!(engine.make_room());
    assert_eq!(engine.stats().evicted, evicted);
    // The footprint grows by 2 MiB: the target falls by as much.
    engine.set_footprint_sample(sample + 2 * MIB, engine.footprint_checkpoint());
    for _ in 0..100 {
        assert!(engine.make_room());
    }
    let data_now = engine.memory().data_bytes;
    assert!(data_now <= target - 2 * MIB && data_now + 1200 > target - 2 * MIB);
    // It falls below the high watermark: the target rises by what it fell, writes do not evict.
    engine.set_footprint_sample(high - 2 * MIB, engine.footprint_checkpoint());
    let evicted = engine.stats().evicted;
    for index in 0..1000 {
        assert!(engine.make_room());
        let _ = engine.apply(&put(&format!("n{index}"), &value, Some(now + 60_000)), now);
    }
    assert_eq!(
        engine.stats().evicted,
        evicted,
        "room below the raised target"
    );
    engine.set_footprint_sample(low - 1, engine.footprint_checkpoint());
    assert!(!engine.memory().alarm);
}

/// An alarm raised between two samples, by the growth accounted since the last one, makes a
/// write evict only what brings used memory under the high watermark (the next sample sets
/// the target), not toward the low watermark.
#[test]
fn between_samples_a_write_evicts_only_under_the_high_watermark() {
    const MIB: u64 = 1 << 20;
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 64 * MIB,
        policy: EvictionPolicy::VolatileLru,
        ..EngineConfig::default()
    });
    let now = unix_ms();
    let value = "v".repeat(1024);
    for index in 0..5_000 {
        let _ = engine.apply(&put(&format!("k{index}"), &value, Some(now + 60_000)), now);
    }
    let high = engine.memory().high_watermark_bytes;
    engine.set_footprint_sample(high - 100_000, engine.footprint_checkpoint());
    let mut index = 5_000;
    while !engine.memory().alarm {
        let _ = engine.apply(&put(&format!("k{index}"), &value, Some(now + 60_000)), now);
        index += 1;
    }
    assert!(engine.make_room());
    assert!(engine.used_bytes() < high);
    assert!(
        engine.stats().evicted <= 2,
        "evicted {}",
        engine.stats().evicted
    );
    assert!(engine.memory().alarm);
}

/// However far the footprint grows, eviction keeps the data floor (an eighth of the low
/// watermark): writes go on at the floor, each evicting about its own size. With used memory
/// half-way into the reserve, a growth write is refused instead of emptying the node.
#[test]
fn eviction_keeps_a_data_floor_and_refuses_deep_in_the_reserve() {
    const MIB: u64 = 1 << 20;
    let engine = MemoryEngine::new(EngineConfig {
        limit_bytes: 64 * MIB,
        policy: EvictionPolicy::VolatileLru,
        ..EngineConfig::default()
    });
    let now = unix_ms();
    let value = "v".repeat(1024);
    for index in 0..10_000 {
        let _ = engine.apply(&put(&format!("k{index}"), &value, Some(now + 60_000)), now);
    }
    let memory = engine.memory();
    let floor = memory.low_watermark_bytes / DATA_FLOOR_DIVISOR;
    assert_eq!(floor, 4_404_019, "an eighth of 70% of 48 MiB");
    engine.set_footprint_sample(
        memory.high_watermark_bytes + MIB,
        engine.footprint_checkpoint(),
    );
    // 12 MiB of growth that is not data: the target alone would be below zero.
    engine.set_footprint_sample(
        memory.high_watermark_bytes + 13 * MIB,
        engine.footprint_checkpoint(),
    );
    for index in 0..2_000 {
        assert!(engine.make_room(), "write {index} refused");
        let _ = engine.apply(&put(&format!("n{index}"), &value, Some(now + 60_000)), now);
    }
    let data = engine.memory().data_bytes;
    assert!(
        data > floor && data < floor + 2 * 1200,
        "data {data} not at the floor {floor}"
    );
    let evicted = engine.stats().evicted;
    let reserve = memory_reserve(64 * MIB);
    engine.set_footprint_sample(64 * MIB - reserve / 2, engine.footprint_checkpoint());
    assert!(!engine.make_room(), "refused half-way into the reserve");
    let after = engine.memory().data_bytes;
    assert!(
        after > floor - 1200,
        "data {after} went below the floor {floor}"
    );
    assert!(engine.stats().evicted - evicted <= 1);
}
