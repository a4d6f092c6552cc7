//! Tests of the write path: what it stores, what it hands to the hook, and its receipts.

use std::sync::Arc;

use bytes::Bytes;

use super::super::testing::put;
use super::*;
use crate::store::engine::EngineConfig;
use crate::store::hook::testing::RecordingHook;
use crate::store::hook::Versioning;
use crate::store::record::Record;
use crate::store::state::view;
use crate::store::value::Value;

/// The log and snapshots encode stored entries as records; copied, the view must give back
/// exactly the record the entry was built from.
#[test]
fn entry_views_give_back_the_stored_records() {
    let stamp = Stamp { hlc: 42, origin: 3 };
    let records = [
        Record::live(
            Bytes::from_static(b"s"),
            stamp,
            Value::String(Bytes::from_static(b"value")),
            Some(99),
        ),
        Record::live(
            Bytes::from_static(b"h"),
            stamp,
            Value::Hash(vec![
                (Bytes::from_static(b"f1"), Bytes::from_static(b"v1")),
                (Bytes::from_static(b""), Bytes::from(vec![b'x'; 300])),
            ]),
            None,
        ),
        Record::tombstone(Bytes::from_static(b"t"), stamp, 1234),
    ];
    for record in records {
        let entry = Entry::of_record(&record.view(), 0);
        assert_eq!(entry.view().to_record(), record);
        assert_eq!(entry.view().size(), record.size());
    }
}

#[test]
fn write_path_applies_and_records() {
    let engine = MemoryEngine::new(EngineConfig::default());
    let hook = Arc::new(RecordingHook::new(Versioning::Stamped));
    assert!(engine.set_hook(hook.clone()));
    let now = unix_ms();
    let mut receipts = vec![engine.apply(&put("a", "1", None), now)];
    receipts.push(engine.apply(&put("b", "2", Some(now + 60_000)), now));
    receipts.push(engine.apply(
        &Op::HashSet {
            key: Bytes::from_static(b"h"),
            fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
        },
        now,
    ));
    assert_eq!(engine.len(), 3);
    assert_eq!(engine.stats().volatile_keys, 1);
    {
        let mut access = engine.key(b"a");
        assert_eq!(
            access.get().map(|entry| entry.payload().to_vec()),
            Some(b"1".to_vec())
        );
    }
    receipts.push(engine.apply(
        &Op::Delete {
            key: Bytes::from_static(b"a"),
        },
        now,
    ));
    assert_eq!(engine.len(), 2);
    let recorded = hook.recorded();
    assert_eq!(recorded.local.len(), 4);
    assert_eq!(
        recorded.local[0],
        Record::live(
            Bytes::from_static(b"a"),
            Stamp { hlc: 1, origin: 1 },
            Value::String(Bytes::from_static(b"1")),
            None
        )
    );
    // One node in disc mode logs a tombstone for the delete but keeps none in memory.
    assert_eq!(
        recorded.local[3],
        Record::tombstone(Bytes::from_static(b"a"), Stamp { hlc: 4, origin: 1 }, now)
    );
    // Each write's receipt carries what its own record asked of the hook.
    let sequences: Vec<_> = receipts.iter().map(|receipt| receipt.replicated).collect();
    assert_eq!(
        sequences,
        vec![Some((1, 1)), Some((2, 2)), Some((3, 3)), Some((4, 4))]
    );
    let mut merged = WriteReceipt::NONE;
    for receipt in receipts {
        merged.merge(receipt);
    }
    assert_eq!(merged.replicated, Some((1, 4)));
}

/// A field written on an existing hash hands over only that field (with the key's expiry
/// register), not the whole hash: what replication carries per write.
#[test]
fn a_hash_write_hands_over_only_what_it_changed() {
    let engine = MemoryEngine::new(EngineConfig::default());
    let hook = Arc::new(RecordingHook::new(Versioning::Replicated));
    assert!(engine.set_hook(hook.clone()));
    let now = unix_ms();
    let set = |fields: &[(&'static str, &'static str)]| Op::HashSet {
        key: Bytes::from_static(b"h"),
        fields: fields
            .iter()
            .map(|(field, value)| {
                (
                    Bytes::from_static(field.as_bytes()),
                    Bytes::from_static(value.as_bytes()),
                )
            })
            .collect(),
    };
    let _ = engine.apply(&set(&[("a", "1"), ("b", "2")]), now);
    let _ = engine.apply(&set(&[("c", "3")]), now);
    let recorded = hook.recorded();
    let delta = recorded.local[1].state().expect("decodes");
    assert_eq!(
        view::hash_fields(&delta),
        vec![(Bytes::from_static(b"c"), Bytes::from_static(b"3"))]
    );
    let whole = engine.read_records(&[Bytes::from_static(b"h")]);
    assert_eq!(
        view::hash_fields(&whole[0].state().expect("decodes")).len(),
        3
    );
    // A replicated delete keeps the deleted fields (absent to reads).
    let _ = engine.apply(
        &Op::Delete {
            key: Bytes::from_static(b"h"),
        },
        now,
    );
    assert!(engine.key(b"h").get().is_none());
    assert_eq!(engine.len(), 0);
    assert!(engine.read_records(&[Bytes::from_static(b"h")])[0].is_tombstone());
}

#[test]
fn a_new_expiry_of_an_unversioned_key_is_rewritten_in_place() {
    let engine = MemoryEngine::new(EngineConfig::default());
    let now = unix_ms();
    let _ = engine.apply(&put("s", "data", Some(now + 1_000)), now);
    let used = engine.used_bytes();
    let expire = |at| Op::SetExpiry {
        key: Bytes::from_static(b"s"),
        expire_at: at,
    };
    let _ = engine.key_at(b"s", now).write(expire(Some(now + 60_000)));
    let mut access = engine.key_at(b"s", now);
    let entry = access.get().cloned();
    assert_eq!(
        entry.as_ref().and_then(Entry::expire_at),
        Some(now + 60_000)
    );
    assert_eq!(entry.as_ref().map(Entry::payload), Some(&b"data"[..]));
    drop(access);
    assert_eq!(engine.used_bytes(), used);
    assert_eq!(engine.stats().volatile_keys, 1);
    // Removing the expiry still changes the entry's layout (and its volatility).
    let _ = engine.key_at(b"s", now).write(expire(None));
    assert_eq!(engine.stats().volatile_keys, 0);
    assert_eq!(
        engine.key_at(b"s", now).get().and_then(Entry::expire_at),
        None
    );
}

#[test]
fn rename_moves_value_and_ttl() {
    let engine = MemoryEngine::new(EngineConfig::default());
    let now = unix_ms();
    let _ = engine.apply(&put("a", "1", Some(now + 10_000)), now);
    let _ = engine.apply(&put("b", "2", None), now);
    assert_eq!(
        engine
            .rename(&Bytes::from_static(b"a"), &Bytes::from_static(b"b"), true)
            .0,
        Some(false)
    );
    assert_eq!(
        engine
            .rename(&Bytes::from_static(b"a"), &Bytes::from_static(b"c"), false)
            .0,
        Some(true)
    );
    assert_eq!(
        engine
            .rename(&Bytes::from_static(b"zz"), &Bytes::from_static(b"c"), false)
            .0,
        None
    );
    let mut access = engine.key(b"c");
    assert_eq!(
        access.get().and_then(|entry| entry.expire_at()),
        Some(now + 10_000)
    );
    drop(access);
    assert!(engine.key(b"a").get().is_none());
}

/// The hook stamps a write above the version it replaces, whoever wrote that version:
/// the write path must hand it the stored stamp, a tombstone's included.
#[test]
fn the_hook_is_told_the_stamp_each_write_replaces() {
    let engine = MemoryEngine::new(EngineConfig::default());
    let hook = Arc::new(RecordingHook::new(Versioning::Replicated));
    assert!(engine.set_hook(hook.clone()));
    let now = unix_ms();
    let remote = Stamp {
        hlc: 1 << 40,
        origin: 9,
    };
    let record = Record::live(
        Bytes::from_static(b"k"),
        remote,
        Value::String(Bytes::from_static(b"theirs")),
        None,
    );
    assert!(engine.merge_record(&record, now, 0));
    let _ = engine.apply(&put("k", "mine", None), now);
    let _ = engine.apply(
        &Op::Delete {
            key: Bytes::from_static(b"k"),
        },
        now,
    );
    let _ = engine.apply(&put("k", "again", None), now);
    let _ = engine.apply(&put("new", "1", None), now);
    let recorded = hook.recorded();
    let stamps: Vec<Stamp> = recorded.local.iter().map(Record::stamp).collect();
    assert_eq!(
        recorded.replaced,
        vec![Some(remote), Some(stamps[0]), Some(stamps[1]), None]
    );
}

/// A key access's get remembers where the key sits for its write: over a live key, a key that
/// expired at the get (removed there), a missing key, and a second write after the first.
#[test]
fn a_write_after_a_get_replaces_or_adds_the_key_once() {
    let engine = MemoryEngine::new(EngineConfig::default());
    let now = 1_000_000;
    let _ = engine.apply(&put("live", "1", None), now);
    let _ = engine.apply(&put("expiring", "1", Some(now + 10)), now);
    for key in ["live", "expiring", "missing"] {
        let mut access = engine.key_at(key.as_bytes(), now + 20);
        let found = access
            .get()
            .and_then(Entry::string)
            .map(|value| value.to_vec());
        let expected = (key == "live").then(|| b"1".to_vec());
        assert_eq!(found, expected, "{key}");
        let _ = access.write(put(key, "2", None));
        let _ = access.write(put(key, "3", None));
        assert_eq!(
            access.get().and_then(Entry::string).as_deref(),
            Some(&b"3"[..]),
            "{key}"
        );
    }
    assert_eq!(engine.len(), 3);
}
