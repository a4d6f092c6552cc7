//! Fault injection for tests of a full or stalled disc. The switch is set through
//! [`crate::persistence::Persistence::inject_fault`] and read by every writer of the log before
//! it writes. It stays compiled in every build because the integration tests drive the real
//! server in-process; on the write path it costs one relaxed atomic load.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// A fault injected by tests ([`crate::persistence::Persistence::inject_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WriterFault {
    /// Writes go to the file.
    None = 0,
    /// Every write fails with ENOSPC, as on a full disc.
    Fail = 1,
    /// The writer waits before writing, as on a stalled disc.
    Stall = 2,
}

/// How often a stalled writer thread looks whether the stall was lifted.
const STALL_POLL: Duration = Duration::from_millis(5);

/// The fault in force, shared by the handle and every writer of the log.
#[derive(Debug)]
pub(crate) struct FaultSwitch(AtomicU8);

impl FaultSwitch {
    /// A switch with no fault.
    pub(crate) fn new() -> FaultSwitch {
        FaultSwitch(AtomicU8::new(WriterFault::None as u8))
    }

    /// Injects `fault` (`WriterFault::None` heals).
    pub(crate) fn set(&self, fault: WriterFault) {
        self.0.store(fault as u8, Ordering::Relaxed);
    }

    /// The fault in force.
    pub(crate) fn get(&self) -> WriterFault {
        match self.0.load(Ordering::Relaxed) {
            1 => WriterFault::Fail,
            2 => WriterFault::Stall,
            _ => WriterFault::None,
        }
    }

    /// Blocks the calling thread while a stall is injected.
    pub(crate) fn wait_while_stalled(&self) {
        while self.get() == WriterFault::Stall {
            std::thread::sleep(STALL_POLL);
        }
    }
}

/// The error a write gets under [`WriterFault::Fail`]: ENOSPC, "No space left on device".
pub(crate) fn disc_full() -> io::Error {
    io::Error::from_raw_os_error(28)
}
