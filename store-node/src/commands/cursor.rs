//! The cursors of `HSCAN`, `SSCAN` and `ZSCAN`, and random picks (`HRANDFIELD`, `SRANDMEMBER`,
//! `SPOP`, `RANDOMKEY`). A collection of up to [`ONE_PAGE`] items answers in one call with
//! cursor 0, as Redis does for its small (listpack, intset) encodings. A larger one pages in the
//! order of a fixed 63-bit hash of each name; the cursor is the hash to continue from, so an
//! item present for the whole iteration is returned at least once whatever is added or removed
//! meanwhile (Redis's guarantee).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{is, parse_i64, NOT_INTEGER, SYNTAX};
use crate::protocol::Frame;
use crate::store::glob;

/// The most items a negative count (picks that may repeat) returns: Redis would build a reply
/// of any size, until its memory ran out; a node serving sessions must not.
pub const MAX_REPEATED_PICKS: u64 = 1 << 24;

/// Collections up to this size answer a scan in one call.
pub const ONE_PAGE: usize = 128;

/// The arguments of a collection scan.
pub struct ScanArgs {
    /// Where to continue (0: from the start).
    pub cursor: u64,
    /// Only names matching this glob.
    pub pattern: Option<Bytes>,
    /// The page size hint.
    pub count: usize,
}

/// Parses `cursor [MATCH pattern] [COUNT count]` (the arguments after the key).
pub fn parse(args: &[Bytes]) -> Result<ScanArgs, Frame> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or(Frame::error("ERR invalid cursor"))?;
    let mut scan = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
    };
    let mut index = 1;
    while index < args.len() {
        let Some(value) = args.get(index + 1) else {
            return Err(SYNTAX);
        };
        if is(&args[index], "match") {
            scan.pattern = Some(value.clone());
        } else if is(&args[index], "count") {
            match parse_i64(value) {
                Some(count) if count >= 1 => scan.count = count as usize,
                Some(_) => return Err(SYNTAX),
                None => return Err(NOT_INTEGER),
            }
        } else {
            return Err(SYNTAX);
        }
        index += 2;
    }
    Ok(scan)
}

/// A name's place in a large collection's scan order: a fixed hash, never 0.
fn order(name: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in name {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1).max(1)
}

/// One page of `items` (named): the next cursor and the items of the page that match.
pub fn page<T>(items: Vec<(Bytes, T)>, scan: &ScanArgs) -> (u64, Vec<(Bytes, T)>) {
    let matches = |name: &Bytes| {
        scan.pattern
            .as_ref()
            .is_none_or(|pattern| glob::matches(pattern, name))
    };
    if items.len() <= ONE_PAGE {
        let all = items
            .into_iter()
            .filter(|(name, _)| matches(name))
            .collect();
        return (0, all);
    }
    let mut ordered: Vec<(u64, Bytes, T)> = items
        .into_iter()
        .map(|(name, item)| (order(&name), name, item))
        .filter(|(place, _, _)| *place >= scan.cursor)
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut next = 0;
    let mut out = Vec::new();
    let mut last = None;
    for (taken, (place, name, item)) in ordered.into_iter().enumerate() {
        // Names of one hash stay in one page, so the cursor never splits them.
        if taken >= scan.count && last != Some(place) {
            next = place;
            break;
        }
        last = Some(place);
        if matches(&name) {
            out.push((name, item));
        }
    }
    (next, out)
}

/// The reply of a scan: `[cursor, items]`.
pub fn reply(next: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from(next.to_string())),
        Frame::Array(items),
    ])
}

/// A random number (not for secrets: picks members and keys).
pub fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: RandomState = RandomState::new();
    }
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    STATE.with(|state| state.hash_one(count))
}

/// A random index below `len` (which must not be 0).
pub fn random_below(len: usize) -> usize {
    (random() % len as u64) as usize
}

/// `count` distinct random indexes below `len` (all of them when `count >= len`), in random
/// order.
pub fn distinct_indexes(len: usize, count: usize) -> Vec<usize> {
    let mut indexes: Vec<usize> = (0..len).collect();
    let take = count.min(len);
    for slot in 0..take {
        let pick = slot + random_below(len - slot);
        indexes.swap(slot, pick);
    }
    indexes.truncate(take);
    indexes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<(Bytes, ())> {
        (0..count)
            .map(|index| (Bytes::from(format!("m{index}")), ()))
            .collect()
    }

    #[test]
    fn small_collections_answer_in_one_page() {
        let scan = ScanArgs {
            cursor: 0,
            pattern: Some(Bytes::from_static(b"m1*")),
            count: 1,
        };
        let (next, items) = page(names(100), &scan);
        assert_eq!(next, 0);
        assert_eq!(items.len(), 11);
    }

    #[test]
    fn large_collections_page_through_everything_despite_removals() {
        let mut items = names(1000);
        let mut seen = std::collections::BTreeSet::new();
        let mut scan = ScanArgs {
            cursor: 0,
            pattern: None,
            count: 50,
        };
        loop {
            let (next, page_items) = page(items.clone(), &scan);
            seen.extend(page_items.into_iter().map(|(name, _)| name));
            // Remove a name already returned: nothing else may be skipped.
            items.retain(|(name, _)| !seen.contains(name) || name.ends_with(b"7"));
            if next == 0 {
                break;
            }
            scan.cursor = next;
        }
        assert_eq!(seen.len(), 1000);
        assert_eq!(distinct_indexes(10, 20).len(), 10);
        let mut picked = distinct_indexes(100, 5);
        picked.sort_unstable();
        picked.dedup();
        assert_eq!(picked.len(), 5);
    }
}
