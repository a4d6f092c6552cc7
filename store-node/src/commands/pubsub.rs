//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH, PUBSUB. Subscriptions
//! live in the node's [`crate::pubsub::Hub`]; a PUBLISH is handed to this node's subscribers
//! and sent to every peer over the replication links, where each hands it to its own (so a
//! subscriber anywhere gets it once), and answers with the receivers on this node, as Redis
//! does in cluster mode. The cluster has no shards: SSUBSCRIBE and SPUBLISH are Redis's
//! separate namespace of shard channels, reaching every node the same way.

use bytes::Bytes;

use super::flags::{LOADING_OK, NO_SCRIPT};
use super::{is, text, Call, CommandSpec};
use crate::protocol::{Frame, Protocol};
use crate::pubsub::Kind;

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("subscribe", -2, LOADING_OK | NO_SCRIPT, subscribe),
    spec!("psubscribe", -2, LOADING_OK | NO_SCRIPT, psubscribe),
    spec!("ssubscribe", -2, LOADING_OK | NO_SCRIPT, ssubscribe),
    spec!("unsubscribe", -1, LOADING_OK | NO_SCRIPT, unsubscribe),
    spec!("punsubscribe", -1, LOADING_OK | NO_SCRIPT, punsubscribe),
    spec!("sunsubscribe", -1, LOADING_OK | NO_SCRIPT, sunsubscribe),
    spec!("publish", 3, LOADING_OK, publish),
    spec!("spublish", 3, LOADING_OK, spublish),
    spec!("pubsub", -2, LOADING_OK, pubsub),
];

/// The commands a RESP2 connection may send while subscribed.
pub const SUBSCRIBED_MODE_COMMANDS: [&str; 9] = [
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "ping",
    "quit",
    "reset",
];

/// Redis's refusal of other commands on a subscribed RESP2 connection.
pub fn not_allowed_while_subscribed(name: &str) -> Frame {
    Frame::Error(
        format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        )
        .into(),
    )
}

/// One confirmation: `[kind, name or null, count]`, a push (an array in RESP2).
fn confirmation(name: &'static str, channel: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk(name.as_bytes()),
        channel.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count as i64),
    ])
}

fn subscribe_kind(call: &mut Call<'_>, kind: Kind) -> Frame {
    let hub = &call.state.pubsub;
    let subscriber = hub.subscriber(call.client.id, call.client.protocol == Protocol::Resp3);
    let replies = call.args[1..]
        .iter()
        .map(|name| {
            let count = hub.subscribe(&subscriber, kind, name);
            confirmation(kind.subscribe_name(), Some(name.clone()), count)
        })
        .collect();
    call.client.subscriptions = subscriber.subscriptions().total();
    call.client.subscriber = Some(subscriber);
    Frame::Sequence(replies)
}

fn unsubscribe_kind(call: &mut Call<'_>, kind: Kind) -> Frame {
    let Some(subscriber) = call.client.subscriber.clone() else {
        let replies = if call.args.len() == 1 {
            vec![confirmation(kind.unsubscribe_name(), None, 0)]
        } else {
            call.args[1..]
                .iter()
                .map(|name| confirmation(kind.unsubscribe_name(), Some(name.clone()), 0))
                .collect()
        };
        return Frame::Sequence(replies);
    };
    let hub = &call.state.pubsub;
    let replies: Vec<Frame> = if call.args.len() == 1 {
        let removed = hub.unsubscribe_all(&subscriber, kind);
        if removed.is_empty() {
            let count = subscriber.subscriptions().count_for(kind);
            vec![confirmation(kind.unsubscribe_name(), None, count)]
        } else {
            removed
                .into_iter()
                .map(|(name, count)| confirmation(kind.unsubscribe_name(), Some(name), count))
                .collect()
        }
    } else {
        call.args[1..]
            .iter()
            .map(|name| {
                let count = hub.unsubscribe(&subscriber, kind, name);
                confirmation(kind.unsubscribe_name(), Some(name.clone()), count)
            })
            .collect()
    };
    call.client.subscriptions = subscriber.subscriptions().total();
    Frame::Sequence(replies)
}

/// SUBSCRIBE channel [channel ...]
pub fn subscribe(call: &mut Call<'_>) -> Frame {
    subscribe_kind(call, Kind::Channel)
}

/// PSUBSCRIBE pattern [pattern ...]
pub fn psubscribe(call: &mut Call<'_>) -> Frame {
    subscribe_kind(call, Kind::Pattern)
}

/// SSUBSCRIBE shardchannel [shardchannel ...]
pub fn ssubscribe(call: &mut Call<'_>) -> Frame {
    subscribe_kind(call, Kind::Shard)
}

/// UNSUBSCRIBE [channel ...]
pub fn unsubscribe(call: &mut Call<'_>) -> Frame {
    unsubscribe_kind(call, Kind::Channel)
}

/// PUNSUBSCRIBE [pattern ...]
pub fn punsubscribe(call: &mut Call<'_>) -> Frame {
    unsubscribe_kind(call, Kind::Pattern)
}

/// SUNSUBSCRIBE [shardchannel ...]
pub fn sunsubscribe(call: &mut Call<'_>) -> Frame {
    unsubscribe_kind(call, Kind::Shard)
}

fn publish_kind(call: &mut Call<'_>, kind: Kind) -> Frame {
    let (channel, message) = (&call.args[1], &call.args[2]);
    let received = call.state.pubsub.publish_local(kind, channel, message);
    if let Some(replication) = call.state.replication() {
        replication.publish(kind == Kind::Shard, channel.clone(), message.clone());
    }
    Frame::Integer(received as i64)
}

/// PUBLISH channel message: the reply counts the receivers on this node.
pub fn publish(call: &mut Call<'_>) -> Frame {
    publish_kind(call, Kind::Channel)
}

/// SPUBLISH shardchannel message
pub fn spublish(call: &mut Call<'_>) -> Frame {
    publish_kind(call, Kind::Shard)
}

/// PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB: this node's subscriptions.
pub fn pubsub(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let hub = &call.state.pubsub;
    let sub = &args[1];
    let names = |kind| {
        Frame::Array(
            hub.channels(kind, args.get(2).map(|pattern| &pattern[..]))
                .into_iter()
                .map(Frame::Bulk)
                .collect(),
        )
    };
    let numsub = |kind| {
        Frame::Array(
            args[2..]
                .iter()
                .flat_map(|channel| {
                    [
                        Frame::Bulk(channel.clone()),
                        Frame::Integer(hub.numsub(kind, channel) as i64),
                    ]
                })
                .collect(),
        )
    };
    let wrong = || {
        Frame::Error(
            format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                text(sub)
            )
            .into(),
        )
    };
    if is(sub, "channels") {
        if args.len() > 3 {
            return wrong();
        }
        names(Kind::Channel)
    } else if is(sub, "shardchannels") {
        if args.len() > 3 {
            return wrong();
        }
        names(Kind::Shard)
    } else if is(sub, "numsub") {
        numsub(Kind::Channel)
    } else if is(sub, "shardnumsub") {
        numsub(Kind::Shard)
    } else if is(sub, "numpat") {
        if args.len() != 2 {
            return Frame::error("ERR wrong number of arguments for 'pubsub|numpat' command");
        }
        Frame::Integer(hub.counts().1 as i64)
    } else {
        Frame::Error(format!("ERR unknown subcommand '{}'. Try PUBSUB HELP.", text(sub)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::{Frame, Protocol};

    fn resp2(frame: &Frame) -> String {
        String::from_utf8_lossy(&frame.to_bytes(Protocol::Resp2)).into_owned()
    }

    #[test]
    fn subscribed_mode_confirmations_and_refusals() {
        let mut h = Harness::new();
        assert_eq!(
            resp2(&h.run("SUBSCRIBE a b")),
            "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
        );
        assert_eq!(
            h.run("GET x"),
            err("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
        );
        assert_eq!(resp2(&h.run("PING")), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        assert_eq!(
            resp2(&h.run("PSUBSCRIBE p*")),
            "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n"
        );
        assert_eq!(
            resp2(&h.run("PUNSUBSCRIBE")),
            "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:2\r\n"
        );
        assert_eq!(
            resp2(&h.run("UNSUBSCRIBE")),
            "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"
        );
        assert_eq!(
            resp2(&h.run("UNSUBSCRIBE")),
            "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert_eq!(h.run("GET x"), Frame::Null);
    }

    #[test]
    fn pubsub_introspection() {
        let mut h = Harness::new();
        h.run("SUBSCRIBE news.1 news.2");
        h.run("PSUBSCRIBE n*");
        h.run("SSUBSCRIBE s");
        assert_eq!(
            h.run("RESET"),
            Frame::Simple("RESET".into()),
            "RESET leaves subscribed mode"
        );
        h.run("SUBSCRIBE news.1 news.2");
        h.run("PSUBSCRIBE n*");
        h.run("SSUBSCRIBE s");
        h.client.protocol = Protocol::Resp3;
        assert_eq!(
            h.run("PUBSUB CHANNELS"),
            Frame::Array(vec![bulk("news.1"), bulk("news.2")])
        );
        assert_eq!(
            h.run("PUBSUB CHANNELS *2"),
            Frame::Array(vec![bulk("news.2")])
        );
        assert_eq!(
            h.run("PUBSUB NUMSUB news.1 none"),
            Frame::Array(vec![
                bulk("news.1"),
                Frame::Integer(1),
                bulk("none"),
                Frame::Integer(0)
            ])
        );
        assert_eq!(h.run("PUBSUB NUMPAT"), Frame::Integer(1));
        assert_eq!(h.run("PUBSUB SHARDCHANNELS"), Frame::Array(vec![bulk("s")]));
        assert_eq!(
            h.run("PUBSUB SHARDNUMSUB s"),
            Frame::Array(vec![bulk("s"), Frame::Integer(1)])
        );
        assert_eq!(h.run("PUBLISH news.1 hello"), Frame::Integer(2));
        assert_eq!(h.run("SPUBLISH s hello"), Frame::Integer(1));
        assert_eq!(
            h.run("PUBSUB NUMPAT x"),
            err("ERR wrong number of arguments for 'pubsub|numpat' command")
        );
        assert_eq!(
            h.run("PUBSUB foo"),
            err("ERR unknown subcommand 'foo'. Try PUBSUB HELP.")
        );
    }
}
