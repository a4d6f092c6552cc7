//! Recovery of a data directory written by the previous build (records as whole values, on-disc
//! format 1; `tests/fixtures/previous-format/README.md` says how it was made): the current
//! build reads the snapshot and the log after it through the merge rule, a whole value of the
//! old format replacing older ones as it always did, and serves every key exactly, TTLs
//! included. A second restart (old files and new ones mixed) gives the same keyspace.

mod disc_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use disc_support::{Node, TempDir};
use redis::Commands;

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/previous-format/data");
    for entry in std::fs::read_dir(&from).expect("fixture directory") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy fixture file");
    }
}

fn expect_keyspace(node: &Node) {
    let mut connection = node.redis();
    let mut keys: Vec<String> = connection.keys("*").expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        [
            "h:new",
            "s:after-snapshot",
            "s:counter",
            "s:overwritten",
            "s:plain",
            "s:ttl",
            "session:a",
            "session:b"
        ]
    );
    let strings: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&[
            "s:plain",
            "s:ttl",
            "s:counter",
            "s:overwritten",
            "s:after-snapshot",
            "s:gone",
        ])
        .query(&mut connection)
        .expect("MGET");
    assert_eq!(
        strings,
        [
            Some("again"),
            Some("value"),
            Some("11"),
            Some("b"),
            Some("yes"),
            None
        ]
        .map(|value| value.map(str::to_string))
    );
    let session_a: BTreeMap<String, String> = connection.hgetall("session:a").expect("HGETALL");
    assert_eq!(
        session_a,
        BTreeMap::from([
            ("data".to_string(), "{\"user\":2}".to_string()),
            ("idleTimeout".to_string(), "1800".to_string()),
        ])
    );
    let session_b: BTreeMap<String, String> = connection.hgetall("session:b").expect("HGETALL");
    assert_eq!(
        session_b,
        BTreeMap::from([
            ("f1".to_string(), "v1".to_string()),
            ("f4".to_string(), "v4".to_string()),
        ])
    );
    let renamed: BTreeMap<String, String> = connection.hgetall("h:new").expect("HGETALL");
    assert_eq!(
        renamed,
        BTreeMap::from([("x".to_string(), "1".to_string())])
    );
    for (key, expiry) in [
        ("s:ttl", 4_102_444_800_000i64),
        ("session:a", 4_102_444_800_123),
        ("session:b", 4_102_444_800_456),
        ("s:plain", -1),
        ("h:new", -1),
        ("h:gone", -2),
        ("s:deleted-after-snapshot", -2),
    ] {
        let at: i64 = redis::cmd("PEXPIRETIME")
            .arg(key)
            .query(&mut connection)
            .expect("PEXPIRETIME");
        assert_eq!(at, expiry, "{key}");
    }
    // The counter keeps counting, now as a mergeable counter.
    let next: i64 = connection.incr("s:counter", 4).expect("INCRBY");
    assert_eq!(next, 15);
    let _: i64 = connection.decr("s:counter", 4).expect("DECRBY");
}

#[test]
fn a_data_directory_of_the_previous_build_recovers_every_key() {
    let dir = TempDir::new("previous-format");
    copy_fixture(&dir.0);
    let mut node = Node::new(0, &dir.0);
    node.start_disc(&[], "always");
    node.wait_ready(Duration::from_secs(30));
    expect_keyspace(&node);
    assert!(node.terminate(Duration::from_secs(20)), "clean exit");
    // Old files and the new build's segment together.
    node.start_disc(&[], "always");
    node.wait_ready(Duration::from_secs(30));
    expect_keyspace(&node);
    assert!(node.terminate(Duration::from_secs(20)), "clean exit");
}
