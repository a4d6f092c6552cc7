//! Position keys of list elements: byte strings compared lexicographically, read as base-256
//! fractions, so a new key always fits between two others. Every key a node makes ends with
//! its origin and a `1` byte, so keys made by different nodes never collide and no key ends
//! with a zero byte (which would leave no room before its extension). Appends and prepends
//! step the first four bytes, so a list pushed at one end keeps keys of about nine bytes;
//! inserts between neighbours take the midpoint and may grow.

/// The first key of an empty list: the middle of the range, leaving room on both sides.
const MIDDLE: u32 = 0x8000_0000;

fn with_suffix(mut fraction: Vec<u8>, origin: u32) -> Vec<u8> {
    fraction.extend_from_slice(&origin.to_be_bytes());
    fraction.push(1);
    fraction
}

fn prefix(key: &[u8]) -> u32 {
    let mut bytes = [0u8; 4];
    for (slot, byte) in bytes.iter_mut().zip(key) {
        *slot = *byte;
    }
    u32::from_be_bytes(bytes)
}

/// A fraction strictly between `low` and `high` (`None`: the end of the range), which is
/// neither a prefix of `high` nor ends with a zero byte. `low` must be below `high`.
fn midpoint(low: &[u8], high: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bounded = high.is_some();
    let mut index = 0;
    loop {
        let l = u32::from(low.get(index).copied().unwrap_or(0));
        let h = if bounded {
            match high.and_then(|high| high.get(index)) {
                Some(byte) => u32::from(*byte),
                // `low` is not below `high`: nothing fits between; stay after `low`.
                None => return [low, &[0x80]].concat(),
            }
        } else {
            256
        };
        if h > l + 1 {
            out.push(((l + h) / 2) as u8);
            return out;
        }
        out.push(l as u8);
        if h == l + 1 {
            bounded = false;
        }
        index += 1;
    }
}

/// A key after `last` (`None`: the list is empty) for a node of origin `origin`.
pub fn after(last: Option<&[u8]>, origin: u32) -> Vec<u8> {
    match last {
        None => with_suffix(MIDDLE.to_be_bytes().to_vec(), origin),
        Some(last) => match prefix(last).checked_add(1) {
            Some(next) => with_suffix(next.to_be_bytes().to_vec(), origin),
            None => with_suffix(midpoint(last, None), origin),
        },
    }
}

/// A key before `first` (`None`: the list is empty).
pub fn before(first: Option<&[u8]>, origin: u32) -> Vec<u8> {
    match first {
        None => after(None, origin),
        Some(first) => match prefix(first).checked_sub(1) {
            Some(previous) if previous > 0 => with_suffix(previous.to_be_bytes().to_vec(), origin),
            _ => with_suffix(midpoint(&[], Some(first)), origin),
        },
    }
}

/// A key between `low` and `high` (either may be absent: an end of the list).
pub fn between(low: Option<&[u8]>, high: Option<&[u8]>, origin: u32) -> Vec<u8> {
    match (low, high) {
        (None, high) => before(high, origin),
        (low, None) => after(low, origin),
        (Some(low), Some(high)) => with_suffix(midpoint(low, Some(high)), origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pushes_at_both_ends_keep_short_ordered_keys() {
        let mut keys = vec![after(None, 7)];
        for _ in 0..1000 {
            let last = keys.last().cloned();
            keys.push(after(last.as_deref(), 7));
            let first = keys.first().cloned();
            keys.insert(0, before(first.as_deref(), 9));
        }
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(keys.iter().all(|key| key.len() == 9));
    }

    proptest! {
        /// Inserting anywhere, any number of times, keeps every key strictly between its
        /// neighbours, whatever the origins.
        #[test]
        fn inserts_always_fit_between_neighbours(slots in proptest::collection::vec((0usize..1000, 0u32..3), 1..200)) {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for (slot, origin) in slots {
                let at = slot % (keys.len() + 1);
                let low = at.checked_sub(1).map(|index| keys[index].clone());
                let high = keys.get(at).cloned();
                let key = between(low.as_deref(), high.as_deref(), origin);
                prop_assert!(low.as_ref().is_none_or(|low| *low < key));
                prop_assert!(high.as_ref().is_none_or(|high| key < *high));
                prop_assert_ne!(key.last(), Some(&0));
                keys.insert(at, key);
            }
        }
    }
}
