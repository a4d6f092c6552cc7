//! A Lua script's run as a RESP connection sees it: a script request runs on the blocking pool
//! holding the node's transaction gate exclusively, so the connection thread goes on serving
//! its other connections; while a script runs past `busy-reply-threshold`, other clients are
//! answered `BUSY` (Redis's text) except for what Redis allows then (`SCRIPT KILL`, `AUTH`,
//! `HELLO`, `QUIT`).

use std::sync::Arc;
use std::time::Duration;

use crate::commands::{execute, flags, lookup, ClientState};
use crate::node::NodeState;

/// Takes the node's transaction gate for reading, unless a script has been running past the
/// busy threshold (`None`: the batch is answered `BUSY` without waiting for it).
pub(super) fn gate_unless_busy(state: &NodeState) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
    loop {
        if let Some(gate) = state
            .transaction_gate
            .try_read_for(Duration::from_millis(5))
        {
            return Some(gate);
        }
        if state.scripts.busy() {
            return None;
        }
    }
}

/// Whether a request's command (its index in the command table, `None` when unknown) runs a
/// Lua script (EVAL and its kin).
pub(super) fn runs_script(command: Option<usize>) -> bool {
    command.is_some_and(|index| crate::commands::commands()[index].flags & flags::SCRIPT != 0)
}

/// Whether a request may run while a script is busy: `SCRIPT KILL`, and what only touches the
/// connection (`AUTH`, `HELLO`, `QUIT`), as Redis's `allow-busy` commands.
pub(super) fn allowed_while_busy(args: &[bytes::Bytes]) -> bool {
    let Some(index) = args.first().and_then(|name| lookup(name)) else {
        return false;
    };
    let spec = crate::commands::commands()[index];
    spec.flags & flags::ALLOW_BUSY != 0
        || (spec.name == "script" && args.len() == 2 && args[1].eq_ignore_ascii_case(b"kill"))
}

/// Runs the script request `args` on the blocking pool, holding the transaction gate
/// exclusively, while this thread goes on serving its other connections; `None` when the
/// script's thread failed (the client state went with it).
pub(super) async fn run_script(
    state: &Arc<NodeState>,
    client: &mut ClientState,
    args: Vec<bytes::Bytes>,
) -> Option<crate::commands::Executed> {
    let placeholder = ClientState::new(client.id, client.authenticated, client.address.clone());
    let mut owned = std::mem::replace(client, placeholder);
    let shared = state.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let exclusive = shared.transaction_gate.write();
        let done = execute(&shared, &mut owned, &args);
        drop(exclusive);
        (owned, done)
    })
    .await;
    match ran {
        Ok((owned, done)) => {
            *client = owned;
            Some(done)
        }
        Err(error) => {
            tracing::error!(%error, "a script's thread failed");
            None
        }
    }
}
