//! Reading a key as one type, for the command families: its decoded state when it holds that
//! type, Redis's `WRONGTYPE` error when it holds another, nothing when it is absent.

use crate::protocol::Frame;
use crate::store::state::State;
use crate::store::{KeyAccess, Kind};

use super::WRONG_TYPE;

/// The live state of the locked key when it holds `kind`; `Err(WRONGTYPE)` for another type.
pub fn state_of(access: &mut KeyAccess<'_>, kind: Kind) -> Result<Option<State>, Frame> {
    match access.get() {
        None => Ok(None),
        Some(entry) if entry.kind() != kind => Err(WRONG_TYPE),
        // The engine encoded it; a state that does not decode shows nothing.
        Some(entry) => Ok(entry.state().ok()),
    }
}

/// Like [`state_of`], locking the key only for the read.
pub fn read(
    engine: &crate::store::MemoryEngine,
    key: &[u8],
    kind: Kind,
) -> Result<Option<State>, Frame> {
    let mut access = engine.key(key);
    state_of(&mut access, kind)
}
