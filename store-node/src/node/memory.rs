//! The node's real memory footprint, sampled every `--memory-sample-interval-ms` (100 ms) into
//! the engine, which adds what it accounts between two samples (docs/memory.md): what the
//! kernel counts against the limit, so refusal or eviction comes before the OOM killer.
//!
//! The footprint is the memory cgroup's charge without file pages when the node's cgroup has
//! a limit (a pod: that is what reaching the limit kills for, kernel memory such as socket
//! buffers included), and never less than the process's anonymous resident memory
//! (`/proc/self/statm` resident minus shared), which is the footprint where no cgroup limit
//! applies (`--max-memory` on a host). [`super::sampler`] runs the ticks.
//!
//! Freed memory must leave the footprint for the alarm to clear: mimalloc (the node's
//! allocator) returns free pages to the kernel 10 ms after they are freed instead of its
//! default 1 s, and each tick lets it purge what expired even while the threads that freed
//! it are idle (a node refusing writes allocates little). Measured in docs/memory.md: after a
//! refused fill was deleted, the writer's footprint stayed at 38.6 MB (alarm raised) without
//! this, and fell to about 21 MB with it.

use std::ffi::{c_int, c_long};
use std::path::Path;
use std::time::Duration;

// Links the allocator's C library into every binary using this crate, for the calls below.
use mimalloc as _;

use parking_lot::Mutex;

use super::cgroup::MemoryCgroup;
use crate::config::{Config, MemoryAccounting};

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h of the bundled v3).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// How long (ms) mimalloc keeps freed pages before returning them to the kernel.
const PURGE_DELAY_MS: c_long = 10;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_collect(force: bool);
}

/// Makes the allocator return freed pages to the kernel within [`PURGE_DELAY_MS`], and turns
/// transparent huge pages off for the process; called once at start-up.
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so wherever the host allows
/// them on request, the first touch of an arena region faults in 2 MiB at once and freed
/// memory goes back to the kernel only in 2 MiB units: a refused 10 MiB request, which only
/// ever buffers 256 KiB, made the footprint grow by 6 MB. A node that must stay under tens of
/// MiB needs its footprint in 4 KiB pages.
pub fn tune_allocator() {
    // SAFETY: mi_option_set only stores an option value; mimalloc reads it at its next purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process, checked at page faults.
    let disabled = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if disabled != 0 {
        tracing::debug!("transparent huge pages could not be turned off for the process");
    }
}

/// Lets the allocator purge the free pages whose delay expired.
pub fn purge_freed_pages() {
    // SAFETY: mi_collect(false) collects the calling thread's heap and purges expired free
    // ranges; it has no preconditions.
    unsafe { mi_collect(false) }
}

/// The figures of the last sample, for INFO, `/v1/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryReadings {
    /// The process's resident memory (`used_memory_rss`), file pages included.
    pub process_rss_bytes: u64,
    /// The process's anonymous resident memory.
    pub process_anon_bytes: u64,
    /// The cgroup's charge without file pages, when the cgroup has a limit.
    pub cgroup_bytes: Option<u64>,
}

impl MemoryReadings {
    /// The footprint the limit is compared with: the larger of the cgroup's and the process's
    /// figures.
    pub fn footprint(&self) -> u64 {
        self.cgroup_bytes.unwrap_or(0).max(self.process_anon_bytes)
    }
}

/// Reads the footprint and keeps the last readings.
#[derive(Debug)]
pub struct MemoryProbe {
    cgroup: Option<MemoryCgroup>,
    accounting: MemoryAccounting,
    interval: Duration,
    last: Mutex<MemoryReadings>,
}

impl MemoryProbe {
    /// A probe for this process: its memory cgroup when that has a limit.
    pub fn new(config: &Config) -> MemoryProbe {
        let cgroup = MemoryCgroup::of_this_process().filter(|cgroup| cgroup.limit().is_some());
        MemoryProbe {
            cgroup,
            accounting: config.memory_accounting,
            interval: Duration::from_millis(config.memory_sample_interval_ms.max(1)),
            last: Mutex::new(MemoryReadings::default()),
        }
    }

    /// How often the footprint is sampled.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the engine's used memory follows the sampled footprint.
    pub fn samples_footprint(&self) -> bool {
        self.accounting == MemoryAccounting::Footprint
    }

    /// Reads the footprint now (and keeps the readings).
    pub fn read(&self) -> MemoryReadings {
        let (process_rss_bytes, process_anon_bytes) =
            process_resident(Path::new("/proc/self/statm"));
        let readings = MemoryReadings {
            process_rss_bytes,
            process_anon_bytes,
            cgroup_bytes: self
                .cgroup
                .as_ref()
                .and_then(MemoryCgroup::unreclaimable_bytes),
        };
        *self.last.lock() = readings;
        readings
    }

    /// The readings of the last sample (read now if there was none yet).
    pub fn last(&self) -> MemoryReadings {
        let last = *self.last.lock();
        if last == MemoryReadings::default() {
            return self.read();
        }
        last
    }
}

/// The memory limit a node runs under: the smaller of `--max-memory` (when set) and its memory
/// cgroup's limit; 0 = unlimited.
pub fn memory_limit(config: &Config) -> u64 {
    let cgroup = MemoryCgroup::of_this_process().and_then(|cgroup| cgroup.limit());
    match (config.max_memory, cgroup) {
        (0, cgroup) => cgroup.unwrap_or(0),
        (configured, Some(cgroup)) => configured.min(cgroup),
        (configured, None) => configured,
    }
}

/// `(resident, anonymous resident)` bytes from a `/proc/<pid>/statm` file; zeros when it
/// cannot be read.
pub fn process_resident(statm: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(statm).unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok());
    match (fields.next().flatten(), fields.next().flatten()) {
        (Some(resident), Some(shared)) => (
            resident * page_size(),
            resident.saturating_sub(shared) * page_size(),
        ),
        _ => (0, 0),
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_and_anonymous() {
        let dir = std::env::temp_dir().join(format!("store-node-statm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("statm");
        std::fs::write(&file, "5000 3000 1000 200 0 2500 0\n").unwrap();
        let page = page_size();
        assert_eq!(process_resident(&file), (3000 * page, 2000 * page));
        std::fs::write(&file, "garbage\n").unwrap();
        assert_eq!(process_resident(&file), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
        let (rss, anon) = process_resident(Path::new("/proc/self/statm"));
        assert!(rss >= anon && anon > 0, "rss {rss} anon {anon}");
    }

    #[test]
    fn the_footprint_is_the_larger_figure() {
        let readings = MemoryReadings {
            process_rss_bytes: 90,
            process_anon_bytes: 70,
            cgroup_bytes: Some(80),
        };
        assert_eq!(readings.footprint(), 80);
        let readings = MemoryReadings {
            cgroup_bytes: None,
            ..readings
        };
        assert_eq!(readings.footprint(), 70);
    }
}
