//! The version of a write: which of two writes of a key is the later one, the same on every
//! node.

/// A version stamp for last-writer-wins: a hybrid-logical-clock value and the origin node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Hybrid logical clock: physical milliseconds << 16 | logical counter.
    pub hlc: u64,
    /// The node that made the write.
    pub origin: u32,
}
