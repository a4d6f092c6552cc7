//! What a state shows a client: the string (a counter's sum), the live fields, members,
//! scores and elements, in the order Redis commands expect.

use bytes::Bytes;

use super::model::{Body, Cell, Element, Slot, State};
use super::number::{score_of, score_sum, sum_text};
use crate::store::value::Value;

/// A cell's text: its register's value, or for a counter the base plus every total.
pub fn cell_text(cell: &Cell) -> Option<Bytes> {
    if cell.counts.is_empty() {
        return cell.register.slot.value().cloned();
    }
    let totals: Vec<&[u8]> = cell.counts.iter().map(|count| &count.total[..]).collect();
    let base = cell.register.slot.value().map(|value| &value[..]);
    // Every contribution was made on a numeric base: a sum that does not parse cannot come
    // from this node's writes; show the base rather than nothing.
    match sum_text(base, &totals) {
        Some(sum) => Some(sum.to_text()),
        None => base.map(Bytes::copy_from_slice),
    }
}

/// A sorted-set cell's score: the register's plus every total, in origin order.
pub fn cell_score(cell: &Cell) -> Option<f64> {
    if !cell.is_live() {
        return None;
    }
    let base = cell.register.slot.value().map(|bytes| score_of(bytes));
    let totals: Vec<f64> = cell
        .counts
        .iter()
        .map(|count| score_of(&count.total))
        .collect();
    Some(score_sum(base, &totals))
}

/// The string a string state shows.
pub fn string_value(state: &State) -> Option<Bytes> {
    match &state.body {
        Body::String(cell) => cell_text(cell),
        _ => None,
    }
}

/// The live fields of a hash, ordered by name.
pub fn hash_fields(state: &State) -> Vec<(Bytes, Bytes)> {
    match &state.body {
        Body::Hash(cells) => cells
            .iter()
            .filter_map(|(name, cell)| Some((name.clone(), cell_text(cell)?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// One live field of a hash.
pub fn hash_field(state: &State, field: &[u8]) -> Option<Bytes> {
    match &state.body {
        Body::Hash(cells) => cells
            .binary_search_by(|(name, _)| name[..].cmp(field))
            .ok()
            .and_then(|index| cell_text(&cells[index].1)),
        _ => None,
    }
}

/// The members of a set, ordered by name.
pub fn set_members(state: &State) -> Vec<Bytes> {
    match &state.body {
        Body::Set(members) => members
            .iter()
            .filter(|(_, member)| member.is_live())
            .map(|(name, _)| name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `member` is in the set.
pub fn set_contains(state: &State, member: &[u8]) -> bool {
    match &state.body {
        Body::Set(members) => members
            .binary_search_by(|(name, _)| name[..].cmp(member))
            .is_ok_and(|index| members[index].1.is_live()),
        _ => false,
    }
}

/// The members of a sorted set with their scores, ordered by score then member (Redis's
/// order).
pub fn zset_members(state: &State) -> Vec<(Bytes, f64)> {
    let mut members: Vec<(Bytes, f64)> = match &state.body {
        Body::ZSet(cells) => cells
            .iter()
            .filter_map(|(name, cell)| Some((name.clone(), cell_score(cell)?)))
            .collect(),
        _ => Vec::new(),
    };
    members.sort_by(|(a_name, a), (b_name, b)| a.total_cmp(b).then_with(|| a_name.cmp(b_name)));
    members
}

/// One member's score.
pub fn zset_score(state: &State, member: &[u8]) -> Option<f64> {
    match &state.body {
        Body::ZSet(cells) => cells
            .binary_search_by(|(name, _)| name[..].cmp(member))
            .ok()
            .and_then(|index| cell_score(&cells[index].1)),
        _ => None,
    }
}

/// The live elements of a list, in order, with their places in the state's element vector.
pub fn list_elements(state: &State) -> Vec<(usize, &Element)> {
    match &state.body {
        Body::List(elements) => elements
            .iter()
            .enumerate()
            .filter(|(_, element)| matches!(element.register.slot, Slot::Value(_)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The values of a list, in order.
pub fn list_values(state: &State) -> Vec<Bytes> {
    list_elements(state)
        .into_iter()
        .filter_map(|(_, element)| element.register.slot.value().cloned())
        .collect()
}

/// How many live fields, members or elements (1 for a live string, 0 for nothing).
pub fn len(state: &State) -> usize {
    match &state.body {
        Body::String(cell) => usize::from(cell.is_live()),
        Body::Hash(cells) | Body::ZSet(cells) => {
            cells.iter().filter(|(_, cell)| cell.is_live()).count()
        }
        Body::Set(members) => members
            .iter()
            .filter(|(_, member)| member.is_live())
            .count(),
        Body::List(elements) => elements
            .iter()
            .filter(|element| matches!(element.register.slot, Slot::Value(_)))
            .count(),
    }
}

/// The whole visible value (`None` when the key shows nothing).
pub fn to_value(state: &State) -> Option<Value> {
    if !state.has_live() {
        return None;
    }
    Some(match &state.body {
        Body::String(_) => Value::String(string_value(state)?),
        Body::Hash(_) => Value::Hash(hash_fields(state)),
        Body::Set(_) => Value::Set(set_members(state)),
        Body::ZSet(_) => Value::ZSet(zset_members(state)),
        Body::List(_) => Value::List(list_values(state)),
    })
}
