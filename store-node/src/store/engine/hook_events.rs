//! What the engine tells its hook besides writes (keyspace notifications name these): keys a
//! local write creates, keys expired on access or by the sweep, evicted keys, and what each
//! change merged from a peer amounts to.

use std::sync::Arc;

use bytes::Bytes;

use super::testing::put;
use super::{EngineConfig, EvictionPolicy, MemoryEngine};
use crate::store::hook::testing::RecordingHook;
use crate::store::hook::{MergedChange, Versioning};
use crate::store::op::Op;
use crate::store::record::{Record, Touch};
use crate::store::stamp::Stamp;
use crate::store::unix_ms;
use crate::store::value::Value;

fn events(hook: &RecordingHook) -> Vec<(&'static str, String)> {
    hook.recorded()
        .events
        .into_iter()
        .map(|(event, key)| (event, String::from_utf8_lossy(&key).into_owned()))
        .collect()
}

fn hooked(config: EngineConfig, versioning: Versioning) -> (MemoryEngine, Arc<RecordingHook>) {
    let engine = MemoryEngine::new(config);
    let hook = Arc::new(RecordingHook::new(versioning));
    assert!(engine.set_hook(hook.clone()));
    (engine, hook)
}

/// A write announces the key it creates (a new key, or one whose value had expired), not a
/// key it overwrites or only changes the expiry of; unversioned writes too.
#[test]
fn local_writes_announce_the_keys_they_create() {
    for versioning in [
        Versioning::Unversioned,
        Versioning::Stamped,
        Versioning::Replicated,
    ] {
        let (engine, hook) = hooked(EngineConfig::default(), versioning);
        let now = unix_ms();
        let _ = engine.apply(&put("a", "1", None), now);
        let _ = engine.apply(&put("a", "2", None), now);
        let _ = engine.apply(&put("old", "1", Some(now + 10)), now);
        let _ = engine.apply(
            &Op::SetExpiry {
                key: Bytes::from_static(b"a"),
                expire_at: Some(now + 60_000),
            },
            now,
        );
        let hset = |field: &'static [u8]| Op::HashSet {
            key: Bytes::from_static(b"h"),
            fields: vec![(Bytes::from_static(field), Bytes::from_static(b"v"))],
        };
        let _ = engine.apply(&hset(b"f"), now);
        let _ = engine.apply(&hset(b"g"), now);
        // Past its expiry, "old" is gone: writing it creates it again.
        let _ = engine.apply(&put("old", "2", None), now + 20);
        assert_eq!(
            events(&hook),
            vec![
                ("created", "a".to_string()),
                ("created", "old".to_string()),
                ("created", "h".to_string()),
                ("created", "old".to_string()),
            ],
            "{versioning:?}"
        );
    }
}

/// Expired keys are announced once each, whether a read finds them or the sweep does.
#[test]
fn expiry_on_access_and_by_the_sweep_is_announced_once_per_key() {
    let (engine, hook) = hooked(EngineConfig::default(), Versioning::Replicated);
    let now = unix_ms();
    for index in 0..50 {
        let _ = engine.apply(&put(&format!("k{index}"), "v", Some(now - 1)), now - 2);
    }
    assert!(engine.key(b"k7").get().is_none());
    assert!(engine.key(b"k7").get().is_none());
    let mut removed = 0;
    for _ in 0..100 {
        removed += engine.sweep_expired(64);
    }
    assert_eq!(removed, 49);
    let mut expired: Vec<String> = events(&hook)
        .into_iter()
        .filter(|(event, _)| *event == "expired")
        .map(|(_, key)| key)
        .collect();
    assert_eq!(expired.first().map(String::as_str), Some("k7"));
    expired.sort();
    let mut all: Vec<String> = (0..50).map(|index| format!("k{index}")).collect();
    all.sort();
    assert_eq!(expired, all);
}

/// An evicted key is announced as evicted (its delete goes through the write path).
#[test]
fn eviction_announces_the_evicted_key() {
    let (engine, hook) = hooked(
        EngineConfig {
            limit_bytes: 10_000_000,
            policy: EvictionPolicy::VolatileLru,
            ..EngineConfig::default()
        },
        Versioning::Replicated,
    );
    let now = unix_ms();
    // Above the data floor (an eighth of the low watermark), which eviction keeps.
    let _ = engine.apply(&put("only", &"v".repeat(700_000), Some(now + 60_000)), now);
    engine.set_peer_alarm(true);
    assert!(engine.make_room());
    assert_eq!(
        events(&hook),
        vec![
            ("created", "only".to_string()),
            ("evicted", "only".to_string())
        ]
    );
    assert!(engine.key(b"only").get().is_none());
}

/// Each merged change is classified as a client of this node sees it.
#[test]
fn merged_changes_say_what_they_amount_to() {
    let (engine, hook) = hooked(EngineConfig::default(), Versioning::Replicated);
    let now = unix_ms();
    let stamp = |hlc| Stamp { hlc, origin: 9 };
    let key = Bytes::from_static(b"k");
    let string = |value: &'static str| Value::String(Bytes::from_static(value.as_bytes()));
    let hash = |fields: &[&'static str]| {
        Value::Hash(
            fields
                .iter()
                .map(|field| {
                    (
                        Bytes::from_static(field.as_bytes()),
                        Bytes::from_static(b"v"),
                    )
                })
                .collect(),
        )
    };
    let records = [
        Record::live(key.clone(), stamp(1), string("a"), None),
        Record::live(key.clone(), stamp(2), string("b"), None),
        Record::live(key.clone(), stamp(3), string("b"), Some(now + 60_000)),
        Record::live(key.clone(), stamp(4), string("b"), None),
        Record::live(key.clone(), stamp(5), hash(&["f", "g"]), None),
        Record::live(key.clone(), stamp(6), hash(&["f"]), None),
        Record::live(key.clone(), stamp(7), hash(&["f", "h"]), None),
        Record::tombstone(key.clone(), stamp(8), now),
        Record::tombstone(key.clone(), stamp(9), now),
        Record::live(key.clone(), stamp(10), string("late"), Some(now - 1)),
        Record::live(key.clone(), stamp(11), string("d"), None),
        Record::live(key.clone(), stamp(12), string("late"), Some(now - 1)),
    ];
    for record in &records {
        assert!(engine.merge_record(record, now, 0));
    }
    assert!(engine.merge_record(
        &Record::live(key.clone(), stamp(13), string("c"), Some(now + 1_000)),
        now,
        0
    ));
    assert!(engine.apply_touch(&Touch {
        key: key.clone(),
        value_stamp: stamp(13),
        expire_at: now + 5_000,
    }));
    let changes: Vec<MergedChange> = hook
        .recorded()
        .merged
        .into_iter()
        .map(|(_, change)| change)
        .collect();
    assert_eq!(
        changes,
        vec![
            MergedChange::Created,
            MergedChange::Replaced,
            MergedChange::Expiry(Some(now + 60_000)),
            MergedChange::Expiry(None),
            MergedChange::Replaced,
            // A whole record of fewer fields removes none: fields merge one by one (a peer's
            // HDEL arrives as deletions of its fields, tests/cluster_keyspace_events.rs).
            MergedChange::Replaced,
            MergedChange::Replaced,
            MergedChange::Deleted,
            MergedChange::Unseen,
            MergedChange::Unseen,
            MergedChange::Created,
            MergedChange::Expired,
            MergedChange::Created,
            MergedChange::Expiry(Some(now + 5_000)),
        ]
    );
}
