//! Whole-key commands: COPY, OBJECT (ENCODING FREQ IDLETIME REFCOUNT HELP), RANDOMKEY, SORT and
//! SORT_RO of lists, sets and sorted sets. SORT's `BY` and `GET` with a pattern (reading other
//! keys) are refused with an error saying so; `BY` without `*` (no sorting) and `GET #` work.

use bytes::Bytes;

use super::cursor;
use super::flags::{DENY_OOM, WRITE};
use super::settings;
use super::CommandSpec;
use super::{is, parse_i64, text, Call, NOT_INTEGER, SYNTAX, WRONG_TYPE};
use crate::config::KeyspaceEvents;
use crate::protocol::Frame;
use crate::store::state::view;
use crate::store::{Entry, Kind, Op, Value};

/// The commands of this family, as the dispatcher finds them.
pub static COMMANDS: &[CommandSpec] = &[
    spec!("copy", -3, WRITE | DENY_OOM, copy),
    spec!("object", -2, 0, object),
    spec!("randomkey", 1, 0, randomkey),
    spec!("sort", -2, WRITE | DENY_OOM, sort),
    spec!("sort_ro", -2, 0, sort_ro),
];

/// COPY source destination [DB destination-db] [REPLACE]
pub fn copy(call: &mut Call<'_>) -> Frame {
    let args = call.args;
    let mut replace = false;
    let mut index = 3;
    while index < args.len() {
        if is(&args[index], "replace") {
            replace = true;
        } else if is(&args[index], "db") && index + 1 < args.len() {
            match parse_i64(&args[index + 1]) {
                Some(0) => {}
                Some(_) => return Frame::error("ERR DB index is out of range"),
                None => return NOT_INTEGER,
            }
            index += 1;
        } else {
            return SYNTAX;
        }
        index += 1;
    }
    let (source, destination) = (args[1].clone(), args[2].clone());
    if source == destination {
        return Frame::error("ERR source and destination objects are the same");
    }
    let mut access = call.state.engine.keys(&[&source, &destination]);
    let Some((value, expire_at)) = access.get(&source).and_then(|entry| {
        let value = entry.state().ok().as_ref().and_then(view::to_value)?;
        Some((value, entry.expire_at()))
    }) else {
        return Frame::Integer(0);
    };
    let replaces = access.get(&destination).is_some();
    if replaces && !replace {
        return Frame::Integer(0);
    }
    let receipt = access.write(Op::Put {
        key: destination.clone(),
        value,
        expire_at,
        keep_ttl: false,
    });
    // Redis deletes a replaced destination and adds the copy: `new` all the same (the engine
    // announces a destination it creates).
    if replaces {
        call.notify(KeyspaceEvents::NEW, "new", &destination);
    }
    call.notify(KeyspaceEvents::GENERIC, "copy_to", &destination);
    drop(access);
    call.wrote(receipt);
    Frame::Integer(1)
}

/// The encoding Redis would give `entry`'s value under this node's encoding parameters.
fn encoding(call: &Call<'_>, entry: &Entry) -> &'static str {
    let limit = |name: &str| settings::value(call.state, name);
    let fits = |count: usize, entries: &str, longest: usize, value: &str| {
        count as i64 <= limit(entries) && longest as i64 <= limit(value)
    };
    let state = entry.state().ok();
    match entry.kind() {
        Kind::String => {
            let value = entry.string().unwrap_or_default();
            if value.len() <= 20 && super::parse_i64(&value).is_some() {
                "int"
            } else if value.len() <= 44 {
                "embstr"
            } else {
                "raw"
            }
        }
        Kind::Hash => {
            let fields = state.as_ref().map(view::hash_fields).unwrap_or_default();
            let longest = fields
                .iter()
                .map(|(field, value)| field.len().max(value.len()))
                .max()
                .unwrap_or(0);
            if fits(
                fields.len(),
                "hash-max-listpack-entries",
                longest,
                "hash-max-listpack-value",
            ) {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Kind::Set => {
            let members = state.as_ref().map(view::set_members).unwrap_or_default();
            let longest = members.iter().map(Bytes::len).max().unwrap_or(0);
            if members
                .iter()
                .all(|member| super::parse_i64(member).is_some())
                && members.len() as i64 <= limit("set-max-intset-entries")
            {
                "intset"
            } else if fits(
                members.len(),
                "set-max-listpack-entries",
                longest,
                "set-max-listpack-value",
            ) {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Kind::ZSet => {
            let members = state.as_ref().map(view::zset_members).unwrap_or_default();
            let longest = members
                .iter()
                .map(|(member, _)| member.len())
                .max()
                .unwrap_or(0);
            if fits(
                members.len(),
                "zset-max-listpack-entries",
                longest,
                "zset-max-listpack-value",
            ) {
                "listpack"
            } else {
                "skiplist"
            }
        }
        Kind::List => {
            let values = state.as_ref().map(view::list_values).unwrap_or_default();
            let size = limit("list-max-listpack-size");
            // A positive size counts entries; a negative one is a byte budget of 4 KiB,
            // 8 KiB, ... (each entry costs its bytes and a few of header).
            let small = if size > 0 {
                values.len() as i64 <= size
            } else {
                let budget = 4096i64 << (size.unsigned_abs().clamp(1, 5) - 1);
                values
                    .iter()
                    .map(|value| value.len() as i64 + 11)
                    .sum::<i64>()
                    <= budget
            };
            if small {
                "listpack"
            } else {
                "quicklist"
            }
        }
    }
}

/// OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key, OBJECT HELP
pub fn object(call: &mut Call<'_>) -> Frame {
    let sub = &call.args[1];
    if is(sub, "help") && call.args.len() == 2 {
        return Frame::Array(
            [
                "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ENCODING <key>",
                "    Return the kind of internal representation used in order to store the value",
                "    associated with a <key>.",
                "FREQ <key>",
                "    Return the access frequency index of the <key>. The returned integer is",
                "    proportional to the logarithm of the recent access frequency of the key.",
                "IDLETIME <key>",
                "    Return the idle time of the <key>, that is the approximated number of",
                "    seconds elapsed since the last access to the key.",
                "REFCOUNT <key>",
                "    Return the number of references of the value associated with the specified",
                "    <key>.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|line| Frame::Simple((*line).into()))
            .collect(),
        );
    }
    let known = ["encoding", "freq", "idletime", "refcount"]
        .iter()
        .any(|name| is(sub, name));
    if !known {
        return Frame::Error(
            format!("ERR unknown subcommand '{}'. Try OBJECT HELP.", text(sub)).into(),
        );
    }
    if call.args.len() != 3 {
        return Frame::Error(
            format!(
                "ERR wrong number of arguments for 'object|{}' command",
                text(sub).to_ascii_lowercase()
            )
            .into(),
        );
    }
    let access = call.state.engine.key(&call.args[2]);
    let now = access.now();
    let Some(entry) = access.peek() else {
        return Frame::Null;
    };
    if is(sub, "encoding") {
        Frame::Bulk(Bytes::from_static(encoding(call, entry).as_bytes()))
    } else if is(sub, "freq") {
        Frame::error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
    } else if is(sub, "idletime") {
        Frame::Integer((now / 1000).saturating_sub(u64::from(entry.lru())) as i64)
    } else {
        // Redis shares the objects of the integers 0..10000: their count is "infinite".
        let shared = entry.kind() == Kind::String
            && entry
                .string()
                .and_then(|value| super::parse_i64(&value))
                .is_some_and(|value| (0..10_000).contains(&value));
        Frame::Integer(if shared { i64::from(i32::MAX) } else { 1 })
    }
}

/// RANDOMKEY
pub fn randomkey(call: &mut Call<'_>) -> Frame {
    call.state
        .engine
        .random_key(cursor::random)
        .map_or(Frame::Null, |key| Frame::Bulk(Bytes::from(key)))
}

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
/// [STORE destination]
pub fn sort(call: &mut Call<'_>) -> Frame {
    sort_generic(call, true)
}

/// SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
pub fn sort_ro(call: &mut Call<'_>) -> Frame {
    sort_generic(call, false)
}

fn sort_generic(call: &mut Call<'_>, may_store: bool) -> Frame {
    let args = call.args;
    let (mut descending, mut alpha, mut sorted) = (false, false, true);
    let mut limit: Option<(i64, i64)> = None;
    let mut store: Option<Bytes> = None;
    let mut index = 2;
    while index < args.len() {
        let left = args.len() - index - 1;
        let option = &args[index];
        if is(option, "asc") {
            descending = false;
        } else if is(option, "desc") {
            descending = true;
        } else if is(option, "alpha") {
            alpha = true;
        } else if is(option, "limit") && left >= 2 {
            let (Some(offset), Some(count)) =
                (parse_i64(&args[index + 1]), parse_i64(&args[index + 2]))
            else {
                return NOT_INTEGER;
            };
            limit = Some((offset, count));
            index += 2;
        } else if is(option, "store") && left >= 1 && may_store {
            store = Some(args[index + 1].clone());
            index += 1;
        } else if is(option, "by") && left >= 1 {
            // A pattern without `*` names no key: Redis then skips sorting.
            if args[index + 1].contains(&b'*') {
                return Frame::error("ERR SORT BY with a pattern is not supported by store-node: it sorts the elements themselves (or, with BY nosort, not at all)");
            }
            sorted = false;
            index += 1;
        } else if is(option, "get") && left >= 1 {
            if &args[index + 1][..] != b"#" {
                return Frame::error("ERR SORT GET with a pattern is not supported by store-node: only GET # (the element itself) is");
            }
            index += 1;
        } else {
            return SYNTAX;
        }
        index += 1;
    }
    let key = args[1].clone();
    let mut locked: Vec<&[u8]> = vec![&key];
    if let Some(destination) = &store {
        locked.push(destination);
    }
    let mut access = call.state.engine.keys(&locked);
    let mut items: Vec<Bytes> = match access.get(&key) {
        None => Vec::new(),
        Some(entry) => {
            let state = entry.state().ok();
            match (entry.kind(), state.as_ref()) {
                (Kind::List, Some(state)) => view::list_values(state),
                (Kind::Set, Some(state)) => view::set_members(state),
                (Kind::ZSet, Some(state)) => view::zset_members(state)
                    .into_iter()
                    .map(|(member, _)| member)
                    .collect(),
                (Kind::String | Kind::Hash, _) => return WRONG_TYPE,
                _ => Vec::new(),
            }
        }
    };
    if sorted {
        if alpha {
            items.sort();
        } else {
            let mut scored = Vec::with_capacity(items.len());
            for item in items {
                match super::zsets::parse_score(&item) {
                    Some(score) => scored.push((score, item)),
                    None => {
                        return Frame::error(
                            "ERR One or more scores can't be converted into double",
                        )
                    }
                }
            }
            // Equal scores compare as strings, so the result is deterministic (as Redis).
            scored.sort_by(|(a, a_item), (b, b_item)| {
                a.total_cmp(b).then_with(|| a_item.cmp(b_item))
            });
            items = scored.into_iter().map(|(_, item)| item).collect();
        }
        if descending {
            items.reverse();
        }
    }
    if let Some((offset, count)) = limit {
        let start = offset.max(0) as usize;
        let take = if count < 0 {
            usize::MAX
        } else {
            count as usize
        };
        items = items.into_iter().skip(start).take(take).collect();
    }
    let Some(destination) = store else {
        return Frame::Array(items.into_iter().map(Frame::Bulk).collect());
    };
    let count = items.len() as i64;
    let exists = access.get(&destination).is_some();
    let receipt = if items.is_empty() {
        if exists {
            let receipt = access.write(Op::Delete {
                key: destination.clone(),
            });
            call.notify(KeyspaceEvents::GENERIC, "del", &destination);
            receipt
        } else {
            crate::store::WriteReceipt::NONE
        }
    } else {
        let receipt = access.write(Op::Put {
            key: destination.clone(),
            value: Value::List(items),
            expire_at: None,
            keep_ttl: false,
        });
        call.notify(KeyspaceEvents::LIST, "sortstore", &destination);
        receipt
    };
    drop(access);
    call.wrote(receipt);
    Frame::Integer(count)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::protocol::Frame;

    fn bulks(items: &[&str]) -> Frame {
        Frame::Array(items.iter().map(|item| bulk(item)).collect())
    }

    #[test]
    fn copy_object_randomkey_sort() {
        let mut h = Harness::new();
        assert_eq!(h.run("RANDOMKEY"), Frame::Null);
        h.run("RPUSH l 3 1 2 10");
        h.run("EXPIRE l 100");
        assert_eq!(h.run("COPY l m"), Frame::Integer(1));
        assert_eq!(h.run("COPY l m"), Frame::Integer(0));
        assert_eq!(
            h.run("COPY l l"),
            err("ERR source and destination objects are the same")
        );
        assert_eq!(h.run("COPY l m DB 1"), err("ERR DB index is out of range"));
        assert_eq!(h.run("TTL m"), Frame::Integer(100));
        assert_eq!(h.run("LRANGE m 0 -1"), bulks(&["3", "1", "2", "10"]));
        let random = h.run("RANDOMKEY");
        assert!(random == bulk("l") || random == bulk("m"), "{random:?}");
        assert_eq!(h.run("SORT l"), bulks(&["1", "2", "3", "10"]));
        assert_eq!(h.run("SORT l ALPHA DESC LIMIT 0 2"), bulks(&["3", "2"]));
        assert_eq!(
            h.run("SORT l BY nosort GET #"),
            bulks(&["3", "1", "2", "10"])
        );
        assert_eq!(h.run("SORT l STORE out"), Frame::Integer(4));
        assert_eq!(h.run("LRANGE out 0 -1"), bulks(&["1", "2", "3", "10"]));
        assert!(
            matches!(h.run("SORT l BY w_*"), Frame::Error(text) if text.starts_with("ERR SORT BY with a pattern is not supported"))
        );
        assert!(
            matches!(h.run("SORT l GET w_*"), Frame::Error(text) if text.starts_with("ERR SORT GET with a pattern is not supported"))
        );
        assert_eq!(h.run("SORT_RO l STORE x"), err("ERR syntax error"));
        h.run("SADD s b a");
        assert_eq!(
            h.run("SORT s"),
            err("ERR One or more scores can't be converted into double")
        );
        assert_eq!(h.run("SORT s ALPHA"), bulks(&["a", "b"]));
        h.run("SET str 12");
        assert_eq!(
            h.run("SORT str"),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
        assert_eq!(h.run("OBJECT ENCODING str"), bulk("int"));
        assert_eq!(h.run("OBJECT REFCOUNT str"), Frame::Integer(2147483647));
        assert_eq!(h.run("OBJECT ENCODING s"), bulk("listpack"));
        h.run("SADD n 1 2");
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("intset"));
        assert_eq!(h.run("CONFIG SET set-max-intset-entries 1"), Frame::ok());
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("listpack"));
        assert_eq!(h.run("OBJECT ENCODING l"), bulk("listpack"));
        assert_eq!(h.run("OBJECT IDLETIME l"), Frame::Integer(0));
        assert_eq!(h.run("OBJECT ENCODING nope"), Frame::Null);
        assert_eq!(
            h.run("OBJECT FOO l"),
            err("ERR unknown subcommand 'FOO'. Try OBJECT HELP.")
        );
        assert!(
            matches!(h.run("OBJECT FREQ l"), Frame::Error(text) if text.starts_with("ERR An LFU maxmemory policy is not selected"))
        );
    }
}
