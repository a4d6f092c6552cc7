//! Reads the container memory limit from the cgroup filesystem: v2 `memory.max`, else v1
//! `memory/memory.limit_in_bytes`. "max" or a huge v1 value (no limit set) means unlimited.

use std::path::Path;

/// v1 reports "no limit" as a page-aligned i64::MAX; anything above this is treated as none.
const UNLIMITED_THRESHOLD: u64 = 1 << 60;

/// The memory limit in bytes under the cgroup root `root` (normally `/sys/fs/cgroup`), or
/// `None` when there is no limit or no cgroup information.
pub fn memory_limit(root: &Path) -> Option<u64> {
    let v2 = std::fs::read_to_string(root.join("memory.max")).ok();
    let v1 = || std::fs::read_to_string(root.join("memory").join("memory.limit_in_bytes")).ok();
    let text = v2.or_else(v1)?;
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let value = text.parse::<u64>().ok()?;
    (value > 0 && value < UNLIMITED_THRESHOLD).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("store-node-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("memory")).unwrap();
        dir
    }

    #[test]
    fn reads_v2_and_v1() {
        let dir = scratch("v2");
        std::fs::write(dir.join("memory.max"), "268435456\n").unwrap();
        assert_eq!(memory_limit(&dir), Some(268435456));
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(memory_limit(&dir), None);
        let dir = scratch("v1");
        std::fs::write(dir.join("memory/memory.limit_in_bytes"), "1073741824\n").unwrap();
        assert_eq!(memory_limit(&dir), Some(1073741824));
        std::fs::write(
            dir.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(memory_limit(&dir), None);
        let dir = scratch("none");
        assert_eq!(memory_limit(&dir), None);
        for name in ["v2", "v1", "none"] {
            let _ = std::fs::remove_dir_all(
                std::env::temp_dir()
                    .join(format!("store-node-cgroup-{name}-{}", std::process::id())),
            );
        }
    }
}
