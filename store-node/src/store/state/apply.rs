//! What one write does to a key's state: [`apply`] takes an [`Op`], the key's state before it
//! and the write's stamp, and gives the state after it and the *delta*, the part of the state
//! the write changed (its registers, contributions, members or elements, with the key's expiry
//! register), which is what replication and the log carry: joined with any state that holds
//! the write's predecessors it gives the same result as the whole state.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::join::{is_void, join_member};
use super::model::{
    Body, Cell, Contribution, Element, ElementId, Expiry, Member, Register, Slot, State,
};
use super::number::{own_score_total, parse_number, score_bytes, score_of, Number};
use super::position;
use super::view::list_elements;
use crate::store::op::{End, Op};
use crate::store::stamp::Stamp;
use crate::store::value::{Kind, Value};

/// What a node keeps of a key's state, as the write path's versioning asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Values only: one node in RAM (no stamps, no deletions, counters folded).
    Values,
    /// Stamps but no deletions: one node on disc (the log gets the deletions, so replay
    /// removes what was deleted; memory need not keep them).
    Versions,
    /// Everything: replication (deletions win over older writes on every node).
    Deletions,
}

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The key's state after the write (`None`: the key goes away entirely).
    pub state: Option<State>,
    /// What the write changed, for the hook (`None`: nothing to hand over).
    pub delta: Option<State>,
}

impl Applied {
    fn unchanged(old: Option<State>) -> Applied {
        Applied {
            state: old,
            delta: None,
        }
    }
}

/// The state a write of `kind` starts from: the live state of that kind, or a new key (a
/// fresh persistent expiry register stamped by the write) that keeps the deletions of a
/// same-typed key showing nothing, so they still win where they must.
fn start(old: Option<State>, kind: Kind, stamp: Stamp, now: u64) -> State {
    let fresh = Expiry { at: None, stamp };
    match old.filter(|state| !state.is_expired(now)) {
        Some(state) if state.kind() == kind && state.has_live() => state,
        Some(mut state) if state.kind() == kind => {
            state.expiry = fresh;
            state
        }
        _ => State {
            expiry: fresh,
            body: Body::empty(kind),
        },
    }
}

/// `old` when it shows a value at `now`.
fn live(old: &Option<State>, now: u64) -> Option<&State> {
    old.as_ref()
        .filter(|state| state.has_live() && !state.is_expired(now))
}

/// The item named `name` of a list ordered by name, inserted as `default()` if missing.
fn upsert<'a, T>(
    items: &'a mut Vec<(Bytes, T)>,
    name: &Bytes,
    default: impl FnOnce() -> T,
) -> &'a mut T {
    let index = match items.binary_search_by(|(own, _)| own.cmp(name)) {
        Ok(index) => index,
        Err(index) => {
            items.insert(index, (name.clone(), default()));
            index
        }
    };
    &mut items[index].1
}

/// Every live register, counter, member and element of `body` deleted as observed: at the
/// stamp it holds, so whatever was written concurrently elsewhere (a greater stamp, an add
/// this node never saw) survives. Returns the deleted parts as a body of their own.
fn remove_observed(body: &mut Body, now: u64) -> Body {
    let dead = |cell: &Cell| Cell::of(Register::dead(cell.register.stamp, now));
    match body {
        Body::String(cell) => {
            if cell.is_live() {
                *cell = dead(cell);
            }
            Body::String(cell.clone())
        }
        Body::Hash(cells) | Body::ZSet(cells) => {
            let mut removed = Vec::new();
            for (name, cell) in cells.iter_mut() {
                if cell.is_live() {
                    *cell = dead(cell);
                    removed.push((name.clone(), cell.clone()));
                }
            }
            if matches!(body, Body::Hash(_)) {
                Body::Hash(removed)
            } else {
                Body::ZSet(removed)
            }
        }
        Body::Set(members) => {
            let mut removed = Vec::new();
            for (name, member) in members.iter_mut() {
                if member.is_live() {
                    let observed = Member {
                        adds: Vec::new(),
                        removed: member.adds.clone(),
                        deleted_at: now,
                    };
                    *member = join_member(member, &observed);
                    removed.push((name.clone(), observed));
                }
            }
            Body::Set(removed)
        }
        Body::List(elements) => {
            let mut removed = Vec::new();
            for element in elements.iter_mut() {
                if let Slot::Value(_) = element.register.slot {
                    element.register = Register::dead(element.register.stamp, now);
                    removed.push(element.clone());
                }
            }
            Body::List(removed)
        }
    }
}

/// Drops every deletion (and what shows nothing) from a state that keeps no deletions.
fn strip_deletions(state: &mut State) {
    match &mut state.body {
        Body::String(_) => {}
        Body::Hash(cells) | Body::ZSet(cells) => cells.retain(|(_, cell)| cell.is_live()),
        Body::Set(members) => members.retain(|(_, member)| member.is_live()),
        Body::List(elements) => {
            elements.retain(|element| matches!(element.register.slot, Slot::Value(_)))
        }
    }
}

/// The body of `value`, every part written by `stamp` (positions after `after`).
fn body_of(value: &Value, stamp: Stamp, after: Option<&[u8]>, keep: Keep) -> Body {
    let cell = |bytes: Bytes| Cell::of(Register::value(stamp, bytes));
    match value {
        Value::String(bytes) => Body::String(cell(bytes.clone())),
        Value::Hash(fields) => {
            let mut cells: BTreeMap<Bytes, Cell> = BTreeMap::new();
            for (name, value) in fields {
                cells.insert(name.clone(), cell(value.clone()));
            }
            Body::Hash(cells.into_iter().collect())
        }
        Value::ZSet(members) => {
            let mut cells: BTreeMap<Bytes, Cell> = BTreeMap::new();
            for (name, score) in members {
                cells.insert(name.clone(), cell(score_bytes(*score)));
            }
            Body::ZSet(cells.into_iter().collect())
        }
        Value::Set(members) => {
            let add = if keep == Keep::Values {
                (0, 1)
            } else {
                (stamp.origin, stamp.hlc)
            };
            let mut out: BTreeMap<Bytes, Member> = BTreeMap::new();
            for name in members {
                out.insert(
                    name.clone(),
                    Member {
                        adds: vec![add],
                        ..Member::default()
                    },
                );
            }
            Body::Set(out.into_iter().collect())
        }
        Value::List(values) => Body::List(new_elements(values, stamp, after, keep)),
    }
}

/// New list elements of one write, in order, placed after `after` (versioned).
fn new_elements(values: &[Bytes], stamp: Stamp, after: Option<&[u8]>, keep: Keep) -> Vec<Element> {
    let mut last = after.map(<[u8]>::to_vec);
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let position = if keep == Keep::Values {
                Vec::new()
            } else {
                position::after(last.as_deref(), stamp.origin)
            };
            last = Some(position.clone());
            Element {
                id: ElementId {
                    stamp,
                    index: index as u32,
                },
                position: Bytes::from(position),
                register: Register::value(stamp, value.clone()),
            }
        })
        .collect()
}

/// The delta of a write: the key's expiry register and the given parts.
fn delta_of(state: &State, body: Body) -> State {
    State {
        expiry: state.expiry,
        body,
    }
}

/// Applies `op` to the key's state `old` with the write's `stamp` (the zero stamp when
/// nothing is versioned) at `now` (Unix ms).
pub fn apply(op: &Op, old: Option<State>, stamp: Stamp, now: u64, keep: Keep) -> Applied {
    let mut applied = match op {
        Op::Put {
            value,
            expire_at,
            keep_ttl,
            ..
        } => {
            let kept = if *keep_ttl {
                old.as_ref()
                    .filter(|state| state.has_live() && !state.is_expired(now))
                    .map(|state| state.expiry)
            } else {
                None
            };
            let mut applied = put(value, *expire_at, old, stamp, now, keep);
            if let Some(expiry) = kept {
                for state in [&mut applied.state, &mut applied.delta]
                    .into_iter()
                    .flatten()
                {
                    state.expiry = expiry;
                }
            }
            applied
        }
        Op::SetExpiry { expire_at, .. } => {
            if live(&old, now).is_none() {
                return Applied::unchanged(old);
            }
            let Some(mut state) = old else {
                return Applied::unchanged(None);
            };
            state.expiry = Expiry {
                at: *expire_at,
                stamp,
            };
            let delta = delta_of(&state, Body::empty(state.kind()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::Delete { .. } | Op::FlushAll => {
            let Some(mut state) = live(&old, now).cloned() else {
                return Applied::unchanged(old);
            };
            if state.kind() == Kind::String {
                let dead = State {
                    expiry: Expiry { at: None, stamp },
                    body: Body::String(Cell::of(Register::dead(stamp, now))),
                };
                Applied {
                    state: Some(dead.clone()),
                    delta: Some(dead),
                }
            } else {
                let removed = remove_observed(&mut state.body, now);
                let delta = delta_of(&state, removed);
                Applied {
                    state: Some(state),
                    delta: Some(delta),
                }
            }
        }
        Op::HashSet { fields, .. } => {
            let mut state = start(old, Kind::Hash, stamp, now);
            let mut changed: BTreeMap<Bytes, Cell> = BTreeMap::new();
            for (name, value) in fields {
                changed.insert(
                    name.clone(),
                    Cell::of(Register::value(stamp, value.clone())),
                );
            }
            if let Body::Hash(cells) = &mut state.body {
                for (name, cell) in &changed {
                    *upsert(cells, name, || cell.clone()) = cell.clone();
                }
            }
            let delta = delta_of(&state, Body::Hash(changed.into_iter().collect()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::HashDelete { fields, .. } => {
            let Some(mut state) = live(&old, now).cloned() else {
                return Applied::unchanged(old);
            };
            let mut changed = BTreeMap::new();
            if let Body::Hash(cells) = &mut state.body {
                for name in fields {
                    if let Ok(index) = cells.binary_search_by(|(own, _)| own.cmp(name)) {
                        if cells[index].1.is_live() {
                            let dead = Cell::of(Register::dead(stamp, now));
                            cells[index].1 = dead.clone();
                            changed.insert(name.clone(), dead);
                        }
                    }
                }
            }
            let delta = delta_of(&state, Body::Hash(changed.into_iter().collect()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::Increment {
            field, by, result, ..
        } => increment(field.as_ref(), by, result, old, stamp, now, keep),
        Op::SetAdd { members, .. } => {
            let mut state = start(old, Kind::Set, stamp, now);
            let add = if keep == Keep::Values {
                (0, 1)
            } else {
                (stamp.origin, stamp.hlc)
            };
            let added = Member {
                adds: vec![add],
                ..Member::default()
            };
            let mut changed = BTreeMap::new();
            if let Body::Set(items) = &mut state.body {
                for name in members {
                    let member = upsert(items, name, Member::default);
                    *member = join_member(member, &added);
                    changed.insert(name.clone(), added.clone());
                }
            }
            let delta = delta_of(&state, Body::Set(changed.into_iter().collect()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::SetRemove { members, .. } => {
            let Some(mut state) = live(&old, now).cloned() else {
                return Applied::unchanged(old);
            };
            let mut changed = BTreeMap::new();
            if let Body::Set(items) = &mut state.body {
                for name in members {
                    if let Ok(index) = items.binary_search_by(|(own, _)| own.cmp(name)) {
                        let member = &mut items[index].1;
                        if member.is_live() {
                            let observed = Member {
                                adds: Vec::new(),
                                removed: member.adds.clone(),
                                deleted_at: now,
                            };
                            *member = join_member(member, &observed);
                            changed.insert(name.clone(), observed);
                        }
                    }
                }
            }
            let delta = delta_of(&state, Body::Set(changed.into_iter().collect()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ZAdd { members, .. } => {
            let mut state = start(old, Kind::ZSet, stamp, now);
            let mut changed: BTreeMap<Bytes, Cell> = BTreeMap::new();
            for (name, score) in members {
                changed.insert(
                    name.clone(),
                    Cell::of(Register::value(stamp, score_bytes(*score))),
                );
            }
            if let Body::ZSet(cells) = &mut state.body {
                for (name, cell) in &changed {
                    *upsert(cells, name, || cell.clone()) = cell.clone();
                }
            }
            let delta = delta_of(&state, Body::ZSet(changed.into_iter().collect()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ZIncrement {
            member, by, result, ..
        } => {
            let mut state = start(old, Kind::ZSet, stamp, now);
            let mut delta_cell = None;
            if let Body::ZSet(cells) = &mut state.body {
                let cell = upsert(cells, member, || Cell::of(Register::UNSET));
                if keep == Keep::Values {
                    *cell = Cell::of(Register::value(stamp, score_bytes(*result)));
                } else {
                    let base = cell.register.slot.value().map(|bytes| score_of(bytes));
                    let own = cell
                        .counts
                        .iter()
                        .find(|count| count.stamp.origin == stamp.origin)
                        .map_or(0.0, |count| score_of(&count.total));
                    let others = cell
                        .counts
                        .iter()
                        .filter(|count| count.stamp.origin != stamp.origin)
                        .count();
                    let total = own_score_total(base, own, *by, others);
                    let contribution = Contribution {
                        stamp,
                        total: score_bytes(total),
                    };
                    set_contribution(cell, contribution.clone());
                    delta_cell = Some(Cell {
                        register: cell.register.clone(),
                        counts: vec![contribution],
                    });
                }
            }
            let body = Body::ZSet(
                delta_cell
                    .map(|cell| (member.clone(), cell))
                    .into_iter()
                    .collect(),
            );
            let delta = delta_of(&state, body);
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ZRemove { members, .. } => {
            let Some(mut state) = live(&old, now).cloned() else {
                return Applied::unchanged(old);
            };
            let mut changed = BTreeMap::new();
            if let Body::ZSet(cells) = &mut state.body {
                for name in members {
                    if let Ok(index) = cells.binary_search_by(|(own, _)| own.cmp(name)) {
                        let cell = &mut cells[index].1;
                        if cell.is_live() {
                            *cell = Cell::of(Register::dead(cell.register.stamp, now));
                            changed.insert(name.clone(), cell.clone());
                        }
                    }
                }
            }
            let delta = delta_of(&state, Body::ZSet(changed.into_iter().collect()));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ListPush { end, values, .. } => {
            let mut state = start(old, Kind::List, stamp, now);
            let added = push(&mut state, *end, values, stamp, keep);
            let delta = delta_of(&state, Body::List(added));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ListInsert { index, values, .. } => {
            let mut state = start(old, Kind::List, stamp, now);
            let added = insert(&mut state, *index, values, stamp, keep);
            let delta = delta_of(&state, Body::List(added));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ListSet { index, value, .. } => {
            let Some(mut state) = live(&old, now).cloned() else {
                return Applied::unchanged(old);
            };
            let target = list_elements(&state).get(*index).map(|(at, _)| *at);
            let mut changed = Vec::new();
            if let (Some(at), Body::List(elements)) = (target, &mut state.body) {
                elements[at].register = Register::value(stamp, value.clone());
                changed.push(elements[at].clone());
            }
            let delta = delta_of(&state, Body::List(changed));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
        Op::ListRemove { indexes, .. } => {
            let Some(mut state) = live(&old, now).cloned() else {
                return Applied::unchanged(old);
            };
            let visible: Vec<usize> = list_elements(&state)
                .into_iter()
                .map(|(at, _)| at)
                .collect();
            let mut targets: Vec<usize> = indexes
                .iter()
                .filter_map(|index| visible.get(*index).copied())
                .collect();
            targets.sort_unstable();
            targets.dedup();
            let mut changed = Vec::new();
            if let Body::List(elements) = &mut state.body {
                for at in targets {
                    let element = &mut elements[at];
                    element.register = Register::dead(element.register.stamp, now);
                    changed.push(element.clone());
                }
            }
            let delta = delta_of(&state, Body::List(changed));
            Applied {
                state: Some(state),
                delta: Some(delta),
            }
        }
    };
    finish(&mut applied, keep);
    applied
}

/// Applies the versioning's rules to an outcome: what a node without replication keeps, and
/// that one node in RAM hands nothing over.
fn finish(applied: &mut Applied, keep: Keep) {
    if keep == Keep::Values {
        applied.delta = None;
    }
    if let Some(state) = &mut applied.state {
        if keep != Keep::Deletions {
            strip_deletions(state);
            if !state.has_live() {
                applied.state = None;
            }
        } else if is_void(state) {
            applied.state = None;
        }
    }
}

fn put(
    value: &Value,
    expire_at: Option<u64>,
    old: Option<State>,
    stamp: Stamp,
    now: u64,
    keep: Keep,
) -> Applied {
    let expiry = Expiry {
        at: expire_at,
        stamp,
    };
    let kind = value.kind();
    let previous = old.filter(|state| {
        state.kind() == kind
            && kind != Kind::String
            && keep != Keep::Values
            && !state.is_expired(now)
    });
    let Some(mut state) = previous else {
        let state = State {
            expiry,
            body: body_of(value, stamp, None, keep),
        };
        return Applied {
            delta: Some(state.clone()),
            state: Some(state),
        };
    };
    // The same type replaced: what was there is deleted as observed, then the new value
    // written, so both travel in the delta.
    remove_observed(&mut state.body, now);
    let after = match &state.body {
        Body::List(elements) => elements.last().map(|element| element.position.clone()),
        _ => None,
    };
    let fresh = State {
        expiry,
        body: body_of(value, stamp, after.as_deref(), keep),
    };
    let mut merged = super::join::join(&fresh, &state);
    merged.expiry = expiry;
    Applied {
        delta: Some(merged.clone()),
        state: Some(merged),
    }
}

/// Sets this origin's contribution in a cell.
fn set_contribution(cell: &mut Cell, contribution: Contribution) {
    match cell
        .counts
        .binary_search_by(|count| count.stamp.origin.cmp(&contribution.stamp.origin))
    {
        Ok(index) => cell.counts[index] = contribution,
        Err(index) => cell.counts.insert(index, contribution),
    }
}

fn increment(
    field: Option<&Bytes>,
    by: &Bytes,
    result: &Bytes,
    old: Option<State>,
    stamp: Stamp,
    now: u64,
    keep: Keep,
) -> Applied {
    let kind = if field.is_some() {
        Kind::Hash
    } else {
        Kind::String
    };
    let mut state = start(old, kind, stamp, now);
    let cell = match (&mut state.body, field) {
        (Body::String(cell), None) => cell,
        (Body::Hash(cells), Some(field)) => upsert(cells, field, || Cell::of(Register::UNSET)),
        _ => return Applied::unchanged(Some(state)),
    };
    let delta_cell = if keep == Keep::Values {
        *cell = Cell::of(Register::value(stamp, result.clone()));
        None
    } else {
        let own = cell
            .counts
            .iter()
            .find(|count| count.stamp.origin == stamp.origin)
            .and_then(|count| parse_number(&count.total))
            .unwrap_or(Number::Int(0));
        let total = own.plus(parse_number(by).unwrap_or(Number::Int(0)));
        let contribution = Contribution {
            stamp,
            total: total.to_text(),
        };
        set_contribution(cell, contribution.clone());
        Some(Cell {
            register: cell.register.clone(),
            counts: vec![contribution],
        })
    };
    let body = match (field, delta_cell) {
        (None, Some(cell)) => Body::String(cell),
        (Some(field), Some(cell)) => Body::Hash(vec![(field.clone(), cell)]),
        (_, None) => Body::empty(kind),
    };
    let delta = delta_of(&state, body);
    Applied {
        state: Some(state),
        delta: Some(delta),
    }
}

/// Pushes `values` at one end of a list; returns the new elements.
fn push(state: &mut State, end: End, values: &[Bytes], stamp: Stamp, keep: Keep) -> Vec<Element> {
    let Body::List(elements) = &mut state.body else {
        return Vec::new();
    };
    match end {
        End::Right => {
            let last = elements.last().map(|element| element.position.clone());
            let added = new_elements(values, stamp, last.as_deref(), keep);
            elements.extend(added.iter().cloned());
            added
        }
        End::Left => {
            let mut first = elements.first().map(|element| element.position.to_vec());
            let mut added = Vec::with_capacity(values.len());
            for (index, value) in values.iter().enumerate() {
                let position = if keep == Keep::Values {
                    Vec::new()
                } else {
                    position::before(first.as_deref(), stamp.origin)
                };
                first = Some(position.clone());
                added.push(Element {
                    id: ElementId {
                        stamp,
                        index: index as u32,
                    },
                    position: Bytes::from(position),
                    register: Register::value(stamp, value.clone()),
                });
            }
            added.reverse();
            elements.splice(0..0, added.iter().cloned());
            added
        }
    }
}

/// Inserts `values` before the live element at `index` (or after the last); returns them.
fn insert(
    state: &mut State,
    index: usize,
    values: &[Bytes],
    stamp: Stamp,
    keep: Keep,
) -> Vec<Element> {
    let target = list_elements(state).get(index).map(|(at, _)| *at);
    let Some(at) = target else {
        return push(state, End::Right, values, stamp, keep);
    };
    let Body::List(elements) = &mut state.body else {
        return Vec::new();
    };
    let high = elements[at].position.clone();
    let mut low = at
        .checked_sub(1)
        .map(|before| elements[before].position.to_vec());
    let mut added = Vec::with_capacity(values.len());
    for (offset, value) in values.iter().enumerate() {
        let position = if keep == Keep::Values {
            Vec::new()
        } else {
            position::between(low.as_deref(), Some(&high), stamp.origin)
        };
        low = Some(position.clone());
        added.push(Element {
            id: ElementId {
                stamp,
                index: offset as u32,
            },
            position: Bytes::from(position),
            register: Register::value(stamp, value.clone()),
        });
    }
    elements.splice(at..at, added.iter().cloned());
    added
}
