//! The write-ahead log: appenders queue records, and whoever holds the open segment writes
//! everything queued with one `write` (group commit): the waiting appender itself under
//! `fsync=everysec`, a dedicated thread under `fsync=always`.
//!
//! - [`queue`]: the append side. Appenders encode their record on their own thread straight
//!   into a queued batch buffer, under a short lock of the bounded queue, and get a sequence
//!   number; back-pressure holds them before they change anything while the queue is full.
//!   Its [`Channel`] is everything shared but the open segment.
//! - [`segment`]: the open segment ([`Log`]) behind its own lock. Its holder takes everything
//!   queued at once (in sequence order, since taking happens under that lock) and writes it;
//!   the segment keeps what is written and synced, rewrites after an error, and rotates.
//! - [`leader`]: under `everysec`, the appender waiting for its record writes the queue on its
//!   own thread; `Shared::wait_durable` is how any waiter waits.
//! - [`thread`]: the writer thread: fdatasyncs (under `always` before acknowledging, under
//!   `everysec` within a second), rotates for snapshots, and retries a failing log.
//! - [`fault`]: a full or stalled disc, injected by tests.
//!
//! Waiters watch [`queue::Progress`]: under `always` a record is acknowledged once
//! fdatasynced, under `everysec` once written (it survives a process crash, not a power cut).
//!
//! A write or fdatasync error (disc full, I/O error) makes the log *failing*: local writes are
//! refused at admission with [`PersistenceError::Unavailable`] (a `MISCONF` error for clients,
//! before they are applied) and waiters get it too. Only the writer thread touches a failing
//! log, every second, until a rewrite succeeds. Never a panic.
//!
//! [`PersistenceError::Unavailable`]: super::PersistenceError::Unavailable

mod fault;
mod leader;
mod queue;
mod segment;
mod thread;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::metrics::PersistenceMetrics;
use crate::config::Fsync;
pub use fault::WriterFault;
pub(crate) use queue::{Channel, Stop};
use segment::Log;
pub(crate) use thread::Writer;

/// The log as the handle, leading appenders and the writer thread share it. Lock order: `log`
/// before the channel's queue.
pub(crate) struct Shared {
    /// Everything shared but the open segment.
    channel: Channel,
    /// The open segment.
    log: Mutex<Log>,
}

impl Shared {
    /// Creates segment `segment` and the shared state around it.
    pub(crate) fn open(
        metrics: Arc<PersistenceMetrics>,
        queue_limit: usize,
        sync_bytes: u64,
        dir: PathBuf,
        node_id: u32,
        fsync: Fsync,
        segment: u64,
    ) -> io::Result<Shared> {
        let log = Log::create(dir, node_id, segment, &metrics)?;
        Ok(Shared {
            channel: Channel::new(metrics, queue_limit, sync_bytes, fsync),
            log: Mutex::new(log),
        })
    }

    /// The queue and what waiters watch.
    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }
}
