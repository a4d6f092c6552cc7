//! The page cache and disc mode's files. The log and snapshots are read back only at recovery,
//! so once on disc their pages are dropped from the cache: cached, they would grow the page
//! cache by everything ever written, memory charged to the node's cgroup (the pod's memory
//! limit) and, on a VM that hands freed memory back to its host, fresh pages to fault in for
//! every write (docs/persistence.md, run K). Recovery reads ahead of the parser instead, so
//! reading a cold file overlaps with replaying it. Every call here only advises the kernel:
//! a failure costs memory or time, never data, so it is ignored.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;

const PAGE: u64 = 4096;

/// How far ahead of the parser recovery asks the kernel to read, in steps of half of it;
/// what lies a step behind is dropped.
const READ_AHEAD_BYTES: u64 = 32 << 20;

fn advise(file: &File, from: u64, to: u64, advice: libc::c_int) {
    if to <= from {
        return;
    }
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(from),
        libc::off_t::try_from(to - from),
    ) else {
        return;
    };
    // SAFETY: posix_fadvise takes a descriptor `file` keeps open and integers; it touches no
    // memory of this process.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, advice);
    }
}

/// Drops the pages holding bytes `from..to` of `file`, which are on disc already, from the
/// page cache. The page holding `from` is included (its start was dropped last time only if
/// the page was whole); the one holding `to` is kept unless `to` ends it.
pub(crate) fn drop_cached(file: &File, from: u64, to: u64) {
    advise(file, from - from % PAGE, to, libc::POSIX_FADV_DONTNEED);
}

/// Writes bytes `from..to` of `file` back to disc (data only, no durability promise: the
/// caller still fsyncs) and drops them from the page cache.
pub(crate) fn write_back_and_drop(file: &File, from: u64, to: u64) {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(from),
        libc::off64_t::try_from(to.saturating_sub(from)),
    ) else {
        return;
    };
    // SAFETY: sync_file_range takes a descriptor `file` keeps open and integers; it touches
    // no memory of this process.
    let result = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )
    };
    if result == 0 {
        drop_cached(file, from, to);
    }
}

/// A file read from the start once (recovery): the kernel is asked to read up to
/// [`READ_AHEAD_BYTES`] ahead of the reader, and what was read is dropped from the cache.
pub(crate) struct ReadAhead {
    file: File,
    position: u64,
    /// Everything before this offset was asked for.
    advised: u64,
    /// Everything before this offset was dropped.
    dropped: u64,
}

impl ReadAhead {
    pub(crate) fn new(file: File) -> ReadAhead {
        ReadAhead {
            file,
            position: 0,
            advised: 0,
            dropped: 0,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = READ_AHEAD_BYTES / 2;
        if self.position + READ_AHEAD_BYTES > self.advised {
            let from = self.advised.max(self.position);
            advise(
                &self.file,
                from,
                from + READ_AHEAD_BYTES,
                libc::POSIX_FADV_WILLNEED,
            );
            self.advised = from + READ_AHEAD_BYTES;
        }
        if self.position >= self.dropped + 2 * step {
            let to = self.position - step;
            drop_cached(&self.file, self.dropped, to);
            self.dropped = to;
        }
        let read = self.file.read(buf)?;
        self.position += read as u64;
        Ok(read)
    }
}

/// How many pages of the file at `path` are in the page cache (`mincore` over a mapping),
/// for tests.
#[cfg(test)]
pub(crate) fn cached_pages(path: &std::path::Path) -> usize {
    let file = File::open(path).expect("open for mincore");
    let len = file.metadata().map(|meta| meta.len() as usize).unwrap_or(0);
    if len == 0 {
        return 0;
    }
    let mut resident = vec![0u8; len.div_ceil(PAGE as usize)];
    // SAFETY: a read-only shared mapping of `len` bytes of a file this process keeps open,
    // unmapped before returning; mincore writes one byte per page into `resident`, which has
    // room for every page of the mapping.
    unsafe {
        let address = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(address, libc::MAP_FAILED, "mmap for mincore");
        let result = libc::mincore(address, len, resident.as_mut_ptr());
        libc::munmap(address, len);
        assert_eq!(result, 0, "mincore");
    }
    resident.iter().filter(|page| **page & 1 == 1).count()
}

/// Whether dropping pages works where `dir` lives (not on tmpfs, which has no disc to drop
/// them to), so tests of dropping can tell a bug from a file system that keeps everything.
#[cfg(test)]
pub(crate) fn dropping_works_in(dir: &std::path::Path) -> bool {
    use std::io::Write;
    let path = dir.join("drop-probe");
    let mut file = File::create(&path).expect("probe file");
    file.write_all(&[7u8; 1 << 20]).expect("write probe");
    file.sync_all().expect("sync probe");
    drop_cached(&file, 0, 1 << 20);
    let works = cached_pages(&path) == 0;
    let _ = std::fs::remove_file(&path);
    works
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a snapshot does every 8 MiB: bytes still dirty (not yet fsynced) are written back
    /// first, or dropping them would do nothing.
    #[test]
    fn written_back_bytes_leave_the_page_cache_before_any_fsync() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("ss-writeback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let path = dir.join("file");
        let mut file = File::create(&path).expect("create scratch file");
        file.write_all(&vec![9u8; 8 << 20])
            .expect("write scratch file");
        let dirty = cached_pages(&path);
        write_back_and_drop(&file, 0, 8 << 20);
        let left = cached_pages(&path);
        let works = dropping_works_in(&dir);
        std::fs::remove_dir_all(&dir).expect("remove scratch dir");
        if works {
            assert!(dirty >= 2000, "only {dirty} pages cached after the write");
            assert_eq!(left, 0, "{left} pages still cached after the write-back");
        }
    }

    #[test]
    fn a_read_ahead_file_reads_exactly_its_bytes_and_drops_them_behind() {
        let dir = std::env::temp_dir().join(format!("ss-readahead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let path = dir.join("file");
        let bytes: Vec<u8> = (0..(READ_AHEAD_BYTES as usize * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &bytes).expect("write scratch file");
        // On disc, as recovery's files are: dirty pages cannot be dropped.
        File::open(&path)
            .and_then(|file| file.sync_all())
            .expect("sync scratch file");
        let mut read = Vec::new();
        let mut reader = ReadAhead::new(File::open(&path).expect("open scratch file"));
        reader.read_to_end(&mut read).expect("read back");
        let left = cached_pages(&path);
        let works = dropping_works_in(&dir);
        std::fs::remove_dir_all(&dir).expect("remove scratch dir");
        if works {
            // What was read is dropped up to a step behind the end.
            let most = (READ_AHEAD_BYTES / PAGE) as usize;
            assert!(
                left <= most,
                "{left} pages still cached, expected at most {most}"
            );
        }
        assert!(
            read == bytes,
            "read {} bytes, wrote {}",
            read.len(),
            bytes.len()
        );
    }
}
