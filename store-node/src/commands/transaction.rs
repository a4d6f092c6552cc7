//! MULTI / EXEC / DISCARD. Queued commands run back to back when EXEC arrives; the server runs
//! EXEC holding the transaction gate exclusively, so no other RESP client's command interleaves
//! (HTTP session writes and the expiry sweep do not take the gate). WATCH is refused rather than
//! silently ignored.

use super::flags::{NO_QUEUE, NO_SCRIPT};
use super::CommandSpec;
use super::{resolve, run, Call};
use crate::protocol::Frame;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("multi", 1, NO_QUEUE | NO_SCRIPT, multi),
    spec!("exec", 1, NO_QUEUE | NO_SCRIPT, exec),
    spec!("discard", 1, NO_QUEUE | NO_SCRIPT, discard),
    spec!("watch", -2, NO_QUEUE | NO_SCRIPT, watch),
    spec!("unwatch", 1, NO_QUEUE | NO_SCRIPT, unwatch),
];

/// MULTI
pub fn multi(call: &mut Call<'_>) -> Frame {
    if call.client.multi.is_some() {
        return Frame::error("ERR MULTI calls can not be nested");
    }
    call.client.multi = Some(Vec::new());
    call.client.multi_bytes = 0;
    call.client.multi_failed = false;
    Frame::ok()
}

/// EXEC
pub fn exec(call: &mut Call<'_>) -> Frame {
    let Some(queue) = call.client.multi.take() else {
        return Frame::error("ERR EXEC without MULTI");
    };
    if std::mem::take(&mut call.client.multi_failed) {
        return Frame::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let mut replies = Vec::with_capacity(queue.len());
    for args in &queue {
        let reply = match resolve(args) {
            Ok(index) => {
                let executed = run(call.state, call.client, index, args);
                call.wrote(executed.receipt);
                executed.reply
            }
            Err(error) => error,
        };
        replies.push(reply);
    }
    Frame::Array(replies)
}

/// DISCARD
pub fn discard(call: &mut Call<'_>) -> Frame {
    if call.client.multi.take().is_none() {
        return Frame::error("ERR DISCARD without MULTI");
    }
    call.client.multi_failed = false;
    Frame::ok()
}

/// WATCH key [key ...]: optimistic locking is not implemented.
pub fn watch(call: &mut Call<'_>) -> Frame {
    if call.client.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed");
    }
    Frame::error("ERR WATCH is not supported by store-node")
}

/// UNWATCH
pub fn unwatch(_call: &mut Call<'_>) -> Frame {
    Frame::ok()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    #[test]
    fn multi_exec_discard() {
        let mut h = Harness::new();
        assert_eq!(h.run("EXEC"), err("ERR EXEC without MULTI"));
        assert_eq!(h.run("DISCARD"), err("ERR DISCARD without MULTI"));
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("MULTI"), err("ERR MULTI calls can not be nested"));
        assert_eq!(h.run("SET k v"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("INCR k"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("GET k"), Frame::Simple("QUEUED".into()));
        assert_eq!(
            h.run("EXEC"),
            Frame::Array(vec![
                Frame::ok(),
                err("ERR value is not an integer or out of range"),
                bulk("v")
            ])
        );
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("SET k w"), Frame::Simple("QUEUED".into()));
        assert_eq!(
            h.run("NOPE"),
            err("ERR unknown command 'NOPE', with args beginning with: ")
        );
        assert_eq!(
            h.run("EXEC"),
            err("EXECABORT Transaction discarded because of previous errors.")
        );
        assert_eq!(h.run("GET k"), bulk("v"));
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("SET k w"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("DISCARD"), Frame::ok());
        assert_eq!(h.run("GET k"), bulk("v"));
    }
}
