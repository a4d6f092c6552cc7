//! Recovery's progress as the rest of the node sees it while it loads: the phase, the bytes
//! read of the total and the records loaded of the total, advanced by the recovering thread and
//! by the loader of the recovered records.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// How far recovery has got, for probes, `INFO` and `/v1/status` while the node loads: plain
/// atomics the recovering thread advances and anyone may read.
#[derive(Debug, Default)]
pub struct RecoveryProgress {
    phase: AtomicU8,
    bytes_total: AtomicU64,
    bytes_read: AtomicU64,
    records_total: AtomicU64,
    records_loaded: AtomicU64,
}

/// A phase of recovery ([`RecoveryProgressSnapshot::phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPhase {
    /// Not started.
    Pending,
    /// Reading the snapshot and the log segments.
    Reading,
    /// Loading the recovered records into the store.
    Loading,
    /// Finished.
    Done,
}

impl RecoveryPhase {
    /// The spelling in `/v1/status` and INFO.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPhase::Pending => "pending",
            RecoveryPhase::Reading => "reading",
            RecoveryPhase::Loading => "loading",
            RecoveryPhase::Done => "done",
        }
    }
}

/// A copy of [`RecoveryProgress`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryProgressSnapshot {
    /// The phase.
    pub phase: RecoveryPhase,
    /// Bytes of snapshot and log to read (known once reading starts).
    pub bytes_total: u64,
    /// Bytes of snapshot and log read so far.
    pub bytes_read: u64,
    /// Records to load into the store (known once reading ends).
    pub records_total: u64,
    /// Records loaded so far.
    pub records_loaded: u64,
}

impl RecoveryProgress {
    /// Moves to `phase`.
    pub fn set_phase(&self, phase: RecoveryPhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Sets the number of records to load.
    pub fn set_records_total(&self, records: u64) {
        self.records_total.store(records, Ordering::Relaxed);
    }

    /// Counts `records` more records loaded.
    pub fn add_records_loaded(&self, records: u64) {
        self.records_loaded.fetch_add(records, Ordering::Relaxed);
    }

    pub(super) fn start_reading(&self, bytes_total: u64) {
        self.bytes_total.store(bytes_total, Ordering::Relaxed);
        self.bytes_read.store(0, Ordering::Relaxed);
        self.records_total.store(0, Ordering::Relaxed);
        self.records_loaded.store(0, Ordering::Relaxed);
        self.set_phase(RecoveryPhase::Reading);
    }

    pub(super) fn add_bytes_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> RecoveryProgressSnapshot {
        RecoveryProgressSnapshot {
            phase: match self.phase.load(Ordering::Relaxed) {
                0 => RecoveryPhase::Pending,
                1 => RecoveryPhase::Reading,
                2 => RecoveryPhase::Loading,
                _ => RecoveryPhase::Done,
            },
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            records_total: self.records_total.load(Ordering::Relaxed),
            records_loaded: self.records_loaded.load(Ordering::Relaxed),
        }
    }
}

impl RecoveryProgressSnapshot {
    /// One line for `/readyz` and logs, e.g. `recovering from disc: read 52428800 of
    /// 104857600 bytes`.
    pub fn describe(&self) -> String {
        match self.phase {
            RecoveryPhase::Pending => "recovering from disc: opening the data directory".into(),
            RecoveryPhase::Reading => format!(
                "recovering from disc: read {} of {} bytes",
                self.bytes_read, self.bytes_total
            ),
            RecoveryPhase::Loading => format!(
                "recovering from disc: loaded {} of {} records",
                self.records_loaded, self.records_total
            ),
            RecoveryPhase::Done => "recovered from disc".into(),
        }
    }
}
