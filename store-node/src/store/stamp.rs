//! The version of a write: which of two writes of a key is the later one, the same on every
//! node.

/// A version stamp for last-writer-wins: a hybrid-logical-clock value and the origin node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// Hybrid logical clock: physical milliseconds << 16 | logical counter.
    pub hlc: u64,
    /// The node that made the write.
    pub origin: u32,
}

impl Stamp {
    /// The smallest stamp: the version of what no write produced yet (an unset register, an
    /// entry of one node in RAM, which stamps nothing).
    pub const ZERO: Stamp = Stamp { hlc: 0, origin: 0 };

    /// The wall-clock milliseconds the stamp was taken at, by its node's clock.
    pub fn physical_ms(self) -> u64 {
        self.hlc >> 16
    }
}
