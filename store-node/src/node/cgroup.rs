//! The memory cgroup the node runs in: its limit and the memory the kernel charges to it that
//! reclaim cannot take back (everything but file pages), read from the cgroup filesystem,
//! v2 (`memory.max`, `memory.current`, `memory.stat`) or v1 (`memory.limit_in_bytes`,
//! `memory.usage_in_bytes`, `memory.stat`). "max" or a huge v1 value (no limit set) means
//! unlimited.
//!
//! The cgroup is the process's own (from `/proc/self/cgroup`) when its directory is visible
//! under the mount, else the mount's root: a container sees its own cgroup mounted at the
//! root while `/proc/self/cgroup` names the host's path.

use std::path::{Path, PathBuf};

/// v1 reports "no limit" as a page-aligned i64::MAX; anything above this is treated as none.
const UNLIMITED_THRESHOLD: u64 = 1 << 60;

/// Which cgroup interface the memory controller uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy.
    V2,
    /// The legacy memory hierarchy (also in "hybrid" setups, where v2 has no controllers).
    V1,
}

/// The memory cgroup of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCgroup {
    /// The cgroup's directory.
    pub dir: PathBuf,
    /// Its interface.
    pub version: CgroupVersion,
    /// The mount's root (v2 limits are looked up from `dir` up to it).
    root: PathBuf,
}

impl MemoryCgroup {
    /// The memory cgroup of this process under the cgroup mount `root` (normally
    /// `/sys/fs/cgroup`), given the text of `/proc/self/cgroup`; `None` without a memory
    /// controller.
    pub fn locate(root: &Path, proc_self_cgroup: &str) -> Option<MemoryCgroup> {
        let v2_controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
        if v2_controllers.is_some_and(|text| text.split_whitespace().any(|c| c == "memory")) {
            let path = proc_self_cgroup
                .lines()
                .find_map(|line| line.strip_prefix("0::"))
                .unwrap_or("/");
            return Some(MemoryCgroup::under(root, path, CgroupVersion::V2));
        }
        let v1_root = root.join("memory");
        if !v1_root.join("memory.usage_in_bytes").exists()
            && !v1_root.join("memory.limit_in_bytes").exists()
        {
            return None;
        }
        let path = proc_self_cgroup
            .lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then_some(path)
            })
            .unwrap_or("/");
        Some(MemoryCgroup::under(&v1_root, path, CgroupVersion::V1))
    }

    /// The memory cgroup of this process under `/sys/fs/cgroup`.
    pub fn of_this_process() -> Option<MemoryCgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        MemoryCgroup::locate(Path::new("/sys/fs/cgroup"), &own)
    }

    fn under(root: &Path, path: &str, version: CgroupVersion) -> MemoryCgroup {
        let relative = path.trim_start_matches('/');
        let own = root.join(relative);
        let dir = if !relative.is_empty() && own.is_dir() {
            own
        } else {
            root.to_path_buf()
        };
        MemoryCgroup {
            dir,
            version,
            root: root.to_path_buf(),
        }
    }

    /// The limit that applies to this cgroup in bytes (the smallest of its own and its visible
    /// ancestors'), or `None` when unlimited.
    pub fn limit(&self) -> Option<u64> {
        let limit = match self.version {
            CgroupVersion::V2 => {
                let mut smallest: Option<u64> = None;
                let mut dir = Some(self.dir.as_path());
                while let Some(current) = dir {
                    if let Some(limit) = read(current, "memory.max").and_then(|t| parse_limit(&t)) {
                        smallest = Some(smallest.map_or(limit, |s| s.min(limit)));
                    }
                    if current == self.root {
                        break;
                    }
                    dir = current.parent();
                }
                smallest
            }
            CgroupVersion::V1 => {
                let own = read(&self.dir, "memory.limit_in_bytes").and_then(|t| parse_limit(&t));
                // `hierarchical_memory_limit` includes the ancestors' limits (a pod's limit
                // sits on the pod's cgroup, the container's is below it).
                let hierarchical = read(&self.dir, "memory.stat")
                    .and_then(|stat| stat_field(&stat, "hierarchical_memory_limit"))
                    .and_then(|value| parse_limit(&value.to_string()));
                match (own, hierarchical) {
                    (Some(own), Some(hierarchical)) => Some(own.min(hierarchical)),
                    (own, hierarchical) => own.or(hierarchical),
                }
            }
        };
        limit
    }

    /// Bytes charged to the cgroup that reclaim cannot drop: the usage minus the file pages
    /// (page cache, the mapped binary), which the kernel reclaims before it kills. This is what
    /// reaching the limit OOM-kills for: anonymous memory, kernel memory charged to the cgroup
    /// (socket buffers, page tables), shared memory.
    pub fn unreclaimable_bytes(&self) -> Option<u64> {
        let (usage_file, active, inactive) = match self.version {
            CgroupVersion::V2 => ("memory.current", "active_file", "inactive_file"),
            CgroupVersion::V1 => (
                "memory.usage_in_bytes",
                "total_active_file",
                "total_inactive_file",
            ),
        };
        let usage = read(&self.dir, usage_file)?.trim().parse::<u64>().ok()?;
        let stat = read(&self.dir, "memory.stat")?;
        let file =
            stat_field(&stat, active).unwrap_or(0) + stat_field(&stat, inactive).unwrap_or(0);
        Some(usage.saturating_sub(file))
    }
}

fn read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let value = text.parse::<u64>().ok()?;
    (value > 0 && value < UNLIMITED_THRESHOLD).then_some(value)
}

fn stat_field(stat: &str, name: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("store-node-cgroup-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, path: &str, text: &str) {
            let file = self.0.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn v2_own_cgroup_limit_is_the_smallest_up_to_the_root_and_usage_leaves_out_files() {
        let root = Scratch::new("v2");
        root.write("cgroup.controllers", "cpu memory pids\n");
        root.write("memory.max", "max\n");
        root.write("pod/memory.max", "268435456\n");
        root.write("pod/app/memory.max", "max\n");
        root.write("pod/app/memory.current", "100000000\n");
        root.write(
            "pod/app/memory.stat",
            "anon 60000000\nfile 40000000\nactive_file 30000000\ninactive_file 10000000\n",
        );
        let cgroup = MemoryCgroup::locate(&root.0, "0::/pod/app\n").unwrap();
        assert_eq!(cgroup.dir, root.0.join("pod/app"));
        assert_eq!(cgroup.version, CgroupVersion::V2);
        assert_eq!(cgroup.limit(), Some(268435456));
        assert_eq!(cgroup.unreclaimable_bytes(), Some(60000000));
        // A container (cgroup namespace or bind mount) sees its cgroup at the root.
        root.write("memory.max", "67108864\n");
        let at_root = MemoryCgroup::locate(&root.0, "0::/kubepods/elsewhere\n").unwrap();
        assert_eq!(at_root.dir, root.0);
        assert_eq!(at_root.limit(), Some(67108864));
        assert_eq!(at_root.unreclaimable_bytes(), None);
    }

    #[test]
    fn v1_limit_includes_the_hierarchical_limit_and_usage_leaves_out_files() {
        let root = Scratch::new("v1");
        root.write("cgroup.controllers", "");
        root.write("memory/memory.usage_in_bytes", "1\n");
        root.write(
            "memory/session/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        root.write("memory/session/memory.usage_in_bytes", "50000000\n");
        root.write(
            "memory/session/memory.stat",
            "cache 20000000\nrss 30000000\nhierarchical_memory_limit 67108864\ntotal_active_file 15000000\ntotal_inactive_file 4000000\n",
        );
        let cgroup =
            MemoryCgroup::locate(&root.0, "5:devices:/\n4:memory:/session\n3:cpu:/\n").unwrap();
        assert_eq!(cgroup.dir, root.0.join("memory/session"));
        assert_eq!(cgroup.version, CgroupVersion::V1);
        assert_eq!(cgroup.limit(), Some(67108864));
        assert_eq!(cgroup.unreclaimable_bytes(), Some(31000000));
        root.write("memory/session/memory.limit_in_bytes", "33554432\n");
        assert_eq!(cgroup.limit(), Some(33554432));
        root.write(
            "memory/session/memory.stat",
            "hierarchical_memory_limit 9223372036854771712\n",
        );
        root.write(
            "memory/session/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(cgroup.limit(), None);
    }

    #[test]
    fn no_memory_controller_means_no_cgroup() {
        let root = Scratch::new("none");
        root.write("cgroup.controllers", "cpu pids\n");
        assert_eq!(MemoryCgroup::locate(&root.0, "0::/\n"), None);
    }
}
