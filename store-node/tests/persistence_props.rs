//! Recovery never panics, whatever bytes the data directory holds: garbage as the only log
//! segment, garbage after a valid segment header, garbage after a valid snapshot header.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use store_node::config::Fsync;
use store_node::persistence::format::{self, FileHeader, SNAPSHOT_MAGIC, WAL_MAGIC};
use store_node::persistence::{Persistence, PersistenceConfig};

const NODE_ID: u32 = 7;

/// A directory deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "persistence-props-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temp dir");
        fs::write(path.join("node-id"), format!("{NODE_ID}\n")).expect("node id");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn header(magic: [u8; 8], seq: u64) -> Vec<u8> {
    FileHeader {
        magic,
        node_id: NODE_ID,
        seq,
    }
    .encode()
    .to_vec()
}

/// Opens the directory; Ok or a described error are both fine, a panic is not. A successful
/// open must leave a log a second open reads without truncating anything.
fn open_twice(dir: &TempDir) {
    let config = PersistenceConfig::new(&dir.0, Fsync::Everysec, NODE_ID);
    match Persistence::open(config.clone(), 0, 0) {
        Ok((log, _)) => {
            log.shutdown().expect("shutdown");
            let (log, recovered) = Persistence::open(config, 0, 0).expect("second open");
            assert_eq!(recovered.report.truncated, None);
            log.shutdown().expect("shutdown");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn garbage_segment_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = TempDir::new();
        fs::write(dir.0.join(format::segment_name(1)), &bytes).expect("write");
        open_twice(&dir);
    }

    #[test]
    fn garbage_after_a_segment_header_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        older in any::<bool>(),
    ) {
        let dir = TempDir::new();
        let mut file = header(WAL_MAGIC, 1);
        file.extend_from_slice(&bytes);
        fs::write(dir.0.join(format::segment_name(1)), &file).expect("write");
        if older {
            fs::write(dir.0.join(format::segment_name(2)), header(WAL_MAGIC, 2)).expect("write");
        }
        open_twice(&dir);
    }

    #[test]
    fn garbage_after_a_snapshot_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = TempDir::new();
        let mut file = header(SNAPSHOT_MAGIC, 3);
        file.extend_from_slice(&bytes);
        fs::write(dir.0.join(format::snapshot_name(3)), &file).expect("write");
        fs::write(dir.0.join(format::segment_name(3)), header(WAL_MAGIC, 3)).expect("write");
        open_twice(&dir);
    }
}
