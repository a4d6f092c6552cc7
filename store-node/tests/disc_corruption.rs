//! Disc mode damage handling (docs/persistence.md): a torn or corrupt log tail is cut
//! with a warning naming the file and byte offset and the node serves what came before it; a
//! corrupt snapshot makes a node without peers refuse to start with an error naming the file
//! and offset; and a RAM node writes nothing to its data directory.

mod disc_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use disc_support::{Node, TempDir};

fn files_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

/// The newest log segment holding records (beyond its 26-byte header).
fn last_written_segment(dir: &Path) -> PathBuf {
    files_with(dir, "wal-")
        .into_iter()
        .rev()
        .find(|path| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0) > 26)
        .expect("a segment with records")
}

fn write_keys(node: &Node, count: usize) {
    let mut connection = node.redis();
    for index in 0..count {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{index}"))
            .arg(format!("value:{index}"))
            .query(&mut connection)
            .expect("SET");
    }
}

fn present(node: &Node, count: usize) -> Vec<Option<String>> {
    let keys: Vec<String> = (0..count).map(|index| format!("key:{index}")).collect();
    redis::cmd("MGET")
        .arg(&keys)
        .query(&mut node.redis())
        .expect("MGET")
}

#[test]
fn a_log_cut_mid_record_is_truncated_with_a_warning_naming_the_offset() {
    let dir = TempDir::new("torn");
    let mut node = Node::new(0, &dir.0);
    node.start_disc(&[], "always");
    node.wait_ready(Duration::from_secs(20));
    write_keys(&node, 50);
    assert!(node.terminate(Duration::from_secs(10)), "clean exit");

    let segment = last_written_segment(&dir.0);
    let length = std::fs::metadata(&segment).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("segment");
    file.set_len(length - 10).expect("truncate");
    drop(file);

    node.start_disc(&[], "always");
    node.wait_ready(Duration::from_secs(20));
    let values = present(&node, 50);
    for (index, value) in values.iter().enumerate().take(49) {
        assert_eq!(value.as_deref(), Some(format!("value:{index}").as_str()));
    }
    assert_eq!(values[49], None, "the torn last record is dropped");
    let log = node.log();
    let warning = log
        .lines()
        .find(|line| line.contains("torn write-ahead log tail truncated"))
        .unwrap_or_else(|| panic!("no truncation warning in:\n{log}"));
    let name = segment
        .file_name()
        .and_then(|name| name.to_str())
        .expect("name");
    assert!(warning.contains(name), "{warning}");
    assert!(warning.contains("\"offset\":"), "{warning}");
    eprintln!("warning: {warning}");
}

#[test]
fn a_flipped_byte_in_the_log_tail_cuts_the_log_there() {
    let dir = TempDir::new("flip-log");
    let mut node = Node::new(0, &dir.0);
    node.start_disc(&[], "always");
    node.wait_ready(Duration::from_secs(20));
    write_keys(&node, 40);
    assert!(node.terminate(Duration::from_secs(10)), "clean exit");

    let segment = last_written_segment(&dir.0);
    let mut bytes = std::fs::read(&segment).expect("segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&segment, &bytes).expect("write");

    node.start_disc(&[], "always");
    node.wait_ready(Duration::from_secs(20));
    let values = present(&node, 40);
    // A prefix survives intact, everything after the damage is gone, nothing is altered.
    let kept = values.iter().take_while(|value| value.is_some()).count();
    assert!(kept > 0 && kept < 40, "kept {kept} of 40");
    for (index, value) in values.iter().enumerate() {
        match index < kept {
            true => assert_eq!(value.as_deref(), Some(format!("value:{index}").as_str())),
            false => assert_eq!(*value, None, "key:{index}"),
        }
    }
    assert!(node.log().contains("torn write-ahead log tail truncated"));
}

#[test]
fn a_corrupt_snapshot_makes_a_lone_node_refuse_to_start_naming_the_file() {
    let dir = TempDir::new("flip-snapshot");
    let mut node = Node::new(0, &dir.0);
    node.start_disc(&[], "everysec");
    node.wait_ready(Duration::from_secs(20));
    // Compaction starts past 64 MiB of log: 70 values of 1 MiB trigger a snapshot.
    let mut connection = node.redis();
    let value = vec![b'v'; 1 << 20];
    for index in 0..70 {
        let _: () = redis::cmd("SET")
            .arg(format!("big:{index}"))
            .arg(&value[..])
            .query(&mut connection)
            .expect("SET");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_with(&dir.0, "snapshot-").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let snapshot = files_with(&dir.0, "snapshot-")
        .pop()
        .unwrap_or_else(|| panic!("no snapshot written\n{}", node.log()));
    assert!(node.terminate(Duration::from_secs(10)), "clean exit");

    let mut bytes = std::fs::read(&snapshot).expect("snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&snapshot, &bytes).expect("write");

    node.start_disc(&[], "everysec");
    let status = node
        .wait_exit(Duration::from_secs(30))
        .expect("the node exits instead of serving");
    assert!(!status.success(), "{status:?}");
    let log = node.log();
    let name = snapshot
        .file_name()
        .and_then(|name| name.to_str())
        .expect("name");
    let error = log
        .lines()
        .find(|line| line.contains("refusing to serve") && line.contains(name))
        .unwrap_or_else(|| panic!("no refusal naming {name} in:\n{log}"));
    assert!(error.contains("at byte"), "{error}");
    eprintln!("refusal: {error}");
}

#[test]
fn a_ram_node_writes_nothing_to_its_data_dir() {
    let dir = TempDir::new("ram");
    let mut node = Node::new(0, &dir.0);
    let path = dir.0.display().to_string();
    node.start(&[], &["--storage-mode", "ram", "--data-dir", &path]);
    node.wait_ready(Duration::from_secs(20));
    write_keys(&node, 20);
    assert!(node.terminate(Duration::from_secs(10)), "clean exit");
    let entries: Vec<_> = std::fs::read_dir(&dir.0).expect("dir").collect();
    assert_eq!(entries.len(), 0, "{entries:?}");
}
