//! The mergeable state of a key, which replaces "the whole value, last writer wins by key":
//! every field, member, element and counter carries the stamp of the write that made it, so
//! concurrent writes of different parts of one key on different nodes all survive.
//!
//! - [`model`]: the state as data; [`view`]: what it shows a client.
//! - [`join`]: the merge rules (a join: commutative, associative, idempotent, per type).
//! - [`apply`]: what one write does to a state, and the delta it hands to replication.
//! - [`encode`]: the compact encoding shared by stored entries, peer records and the log.
//! - [`number`], [`position`]: counter arithmetic; list position keys.

pub mod apply;
pub mod encode;
pub mod join;
pub mod model;
pub mod number;
pub mod position;
pub mod view;

#[cfg(test)]
mod join_tests;

pub use apply::{apply, Applied, Keep};
pub use encode::{decode, encode, DecodeError, Header};
pub use join::{collect_deletions, is_void, join, merge};
pub use model::{
    Body, Cell, Contribution, Element, ElementId, Expiry, Member, Register, Slot, State,
};
