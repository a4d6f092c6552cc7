//! MULTI / EXEC / DISCARD / WATCH / UNWATCH. Queued commands run back to back when EXEC
//! arrives; the server runs EXEC holding the transaction gate exclusively, so no other RESP
//! client's command interleaves (HTTP session writes, records merged from peers and the expiry
//! sweep do not take the gate). WATCH is Redis's optimistic lock on this node: EXEC aborts with
//! a null reply when a watched key changed since the WATCH, whether by a command of any client,
//! a record merged from a peer, an expiry, an eviction or FLUSHALL. What it cannot see is a
//! write another node made and this node has not received yet (docs/replication.md).

use super::flags::{NO_QUEUE, NO_SCRIPT};
use super::CommandSpec;
use super::{lookup, resolve, run, Call};
use crate::protocol::Frame;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("multi", 1, NO_QUEUE | NO_SCRIPT, multi),
    spec!("exec", 1, NO_QUEUE | NO_SCRIPT, exec),
    spec!("discard", 1, NO_QUEUE | NO_SCRIPT, discard),
    spec!("watch", -2, NO_QUEUE | NO_SCRIPT, watch),
    spec!("unwatch", 1, NO_SCRIPT, unwatch),
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
    let watched = std::mem::take(&mut call.client.watched);
    if std::mem::take(&mut call.client.multi_failed) {
        return Frame::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let changed = watched.iter().any(|watch| {
        watch.touched() || (watch.existed() && call.state.engine.key(watch.key()).get().is_none())
    });
    if changed {
        return Frame::NullArray;
    }
    let mut replies = Vec::with_capacity(queue.len());
    for args in &queue {
        let found = args.first().and_then(|name| lookup(name));
        let reply = match resolve(args, found) {
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
    call.client.watched.clear();
    Frame::ok()
}

/// WATCH key [key ...]
pub fn watch(call: &mut Call<'_>) -> Frame {
    if call.client.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed");
    }
    for key in &call.args[1..] {
        if !call.client.watched.iter().any(|watch| watch.key() == key) {
            let watch = call.state.engine.watch(key);
            call.client.watched.push(watch);
        }
    }
    Frame::ok()
}

/// UNWATCH
pub fn unwatch(call: &mut Call<'_>) -> Frame {
    call.client.watched.clear();
    Frame::ok()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{execute, ClientState};
    use crate::protocol::Frame;

    #[test]
    fn watch_aborts_exec_when_a_watched_key_changes() {
        let mut h = Harness::new();
        h.run("SET k 1");
        assert_eq!(h.run("WATCH k other"), Frame::ok());
        // Another client changes the watched key.
        let mut other = ClientState::new(2, true, "other".into());
        let args: Vec<bytes::Bytes> = ["INCR", "k"]
            .iter()
            .map(|arg| bytes::Bytes::from(*arg))
            .collect();
        assert_eq!(
            execute(&h.state, &mut other, &args).reply,
            Frame::Integer(2)
        );
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(
            h.run("WATCH k"),
            err("ERR WATCH inside MULTI is not allowed")
        );
        assert_eq!(h.run("SET k mine"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("EXEC"), Frame::NullArray);
        assert_eq!(h.run("GET k"), bulk("2"));
        // EXEC unwatched everything: the next transaction runs.
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("SET k mine"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("EXEC"), Frame::Array(vec![Frame::ok()]));
        // Untouched watched keys let EXEC run; UNWATCH inside MULTI is queued.
        assert_eq!(h.run("WATCH k"), Frame::ok());
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("UNWATCH"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("EXEC"), Frame::Array(vec![Frame::ok()]));
        // A watched key that expires aborts too.
        h.run("SET t v PX 30");
        assert_eq!(h.run("WATCH t"), Frame::ok());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("EXEC"), Frame::NullArray);
        // The client's own write to a watched key aborts, as in Redis.
        assert_eq!(h.run("WATCH k"), Frame::ok());
        h.run("SET k again");
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("EXEC"), Frame::NullArray);
        // DISCARD unwatches.
        assert_eq!(h.run("WATCH k"), Frame::ok());
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("DISCARD"), Frame::ok());
        h.run("SET k later");
        assert_eq!(h.run("MULTI"), Frame::ok());
        assert_eq!(h.run("EXEC"), Frame::Array(vec![]));
    }

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
