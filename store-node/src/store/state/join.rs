//! The merge rules: [`join`] of two states of one type, register by register, counter by
//! counter, member by member, element by element; it is commutative, associative and
//! idempotent (proptests in `super::join_tests`), so every node that received the same writes,
//! in any order, any number of times, holds the same state. [`merge`] is what a node applies
//! to a state it receives: the join, plus the rules that are not per element (two types, an
//! expired incarnation, forgotten deletions). docs/replication.md states each rule and its
//! guarantee.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::model::{Body, Cell, Contribution, Element, Expiry, Member, Register, Slot, State};

/// Two writes with the same stamp are the same write, so they hold the same bytes; should two
/// ever differ, the greater bytes win, so the join stays deterministic.
fn same_write<'a>(a: &'a Bytes, b: &'a Bytes) -> &'a Bytes {
    if a >= b {
        a
    } else {
        b
    }
}

/// The join of two registers: the greater `(stamp, rank)`; two deletions of the same write
/// keep the later deletion time.
pub fn join_register(a: &Register, b: &Register) -> Register {
    match a.order().cmp(&b.order()) {
        std::cmp::Ordering::Greater => a.clone(),
        std::cmp::Ordering::Less => b.clone(),
        std::cmp::Ordering::Equal => match (&a.slot, &b.slot) {
            (Slot::Dead { deleted_at: mine }, Slot::Dead { deleted_at: theirs }) => {
                Register::dead(a.stamp, (*mine).max(*theirs))
            }
            (Slot::Value(mine), Slot::Value(theirs)) => {
                Register::value(a.stamp, same_write(mine, theirs).clone())
            }
            _ => a.clone(),
        },
    }
}

/// Per origin, the contribution with the later stamp.
fn join_counts(a: &[Contribution], b: &[Contribution]) -> Vec<Contribution> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut left, mut right) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (left.peek(), right.peek()) {
            (Some(x), Some(y)) => match x.stamp.origin.cmp(&y.stamp.origin) {
                std::cmp::Ordering::Less => out.push(left.next().cloned()),
                std::cmp::Ordering::Greater => out.push(right.next().cloned()),
                std::cmp::Ordering::Equal => {
                    let (x, y) = (left.next(), right.next());
                    out.push(match (x, y) {
                        (Some(x), Some(y)) if x.stamp > y.stamp => Some(x.clone()),
                        (Some(x), Some(y)) if x.stamp < y.stamp => Some(y.clone()),
                        (Some(x), Some(y)) => Some(Contribution {
                            stamp: x.stamp,
                            total: same_write(&x.total, &y.total).clone(),
                        }),
                        (x, y) => x.or(y).cloned(),
                    });
                }
            },
            (Some(_), None) => out.push(left.next().cloned()),
            (None, Some(_)) => out.push(right.next().cloned()),
            (None, None) => break,
        }
    }
    out.into_iter().flatten().collect()
}

/// The join of two cells: the greater base wins with its contributions; on the same base the
/// contributions join per origin.
pub fn join_cell(a: &Cell, b: &Cell) -> Cell {
    match a.register.order().cmp(&b.register.order()) {
        std::cmp::Ordering::Greater => a.clone(),
        std::cmp::Ordering::Less => b.clone(),
        std::cmp::Ordering::Equal => Cell {
            register: join_register(&a.register, &b.register),
            counts: join_counts(&a.counts, &b.counts),
        },
    }
}

/// Per origin, the greater of two `(origin, hlc)` lists ordered by origin.
fn join_maxima(a: &[(u32, u64)], b: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut out: BTreeMap<u32, u64> = a.iter().copied().collect();
    for (origin, hlc) in b {
        let slot = out.entry(*origin).or_insert(0);
        *slot = (*slot).max(*hlc);
    }
    out.into_iter().collect()
}

/// The join of two set members: pointwise maxima of their adds and observed removals.
pub fn join_member(a: &Member, b: &Member) -> Member {
    Member {
        adds: join_maxima(&a.adds, &b.adds),
        removed: join_maxima(&a.removed, &b.removed),
        deleted_at: a.deleted_at.max(b.deleted_at),
    }
}

/// The join of two versions of one list element (same id).
fn join_element(a: &Element, b: &Element) -> Element {
    Element {
        id: a.id,
        position: same_write(&a.position, &b.position).clone(),
        register: join_register(&a.register, &b.register),
    }
}

/// The join of two expiry registers: the greater stamp; equal stamps, the later expiry.
pub fn join_expiry(a: Expiry, b: Expiry) -> Expiry {
    if a.order() >= b.order() {
        a
    } else {
        b
    }
}

/// Joins two lists of `(name, item)` ordered by name.
fn join_named<T: Clone>(
    a: &[(Bytes, T)],
    b: &[(Bytes, T)],
    join: impl Fn(&T, &T) -> T,
) -> Vec<(Bytes, T)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut left, mut right) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (left.peek(), right.peek()) {
            (Some((x, _)), Some((y, _))) => match x.cmp(y) {
                std::cmp::Ordering::Less => out.extend(left.next().cloned()),
                std::cmp::Ordering::Greater => out.extend(right.next().cloned()),
                std::cmp::Ordering::Equal => {
                    if let (Some((name, x)), Some((_, y))) = (left.next(), right.next()) {
                        out.push((name.clone(), join(x, y)));
                    }
                }
            },
            (Some(_), None) => out.extend(left.next().cloned()),
            (None, Some(_)) => out.extend(right.next().cloned()),
            (None, None) => break,
        }
    }
    out
}

/// Joins two element lists, each ordered by `(position, id)`: one merge pass (an element's
/// position never changes, so the same element sits at the same key in both).
fn join_elements(a: &[Element], b: &[Element]) -> Vec<Element> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut left, mut right) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (left.peek(), right.peek()) {
            (Some(x), Some(y)) => match x.order().cmp(&y.order()) {
                std::cmp::Ordering::Less => out.extend(left.next().cloned()),
                std::cmp::Ordering::Greater => out.extend(right.next().cloned()),
                std::cmp::Ordering::Equal => {
                    if let (Some(x), Some(y)) = (left.next(), right.next()) {
                        out.push(join_element(x, y));
                    }
                }
            },
            (Some(_), None) => out.extend(left.next().cloned()),
            (None, Some(_)) => out.extend(right.next().cloned()),
            (None, None) => break,
        }
    }
    out
}

/// The join of two states of the same type. Of two types, `a`'s body is kept (see [`merge`]
/// for the rule between types).
pub fn join(a: &State, b: &State) -> State {
    let body = match (&a.body, &b.body) {
        (Body::String(x), Body::String(y)) => Body::String(join_cell(x, y)),
        (Body::Hash(x), Body::Hash(y)) => Body::Hash(join_named(x, y, join_cell)),
        (Body::ZSet(x), Body::ZSet(y)) => Body::ZSet(join_named(x, y, join_cell)),
        (Body::Set(x), Body::Set(y)) => Body::Set(join_named(x, y, join_member)),
        (Body::List(x), Body::List(y)) => Body::List(join_elements(x, y)),
        (body, _) => body.clone(),
    };
    State {
        expiry: join_expiry(a.expiry, b.expiry),
        body,
    }
}

/// Whether `newer` expiry register was written (by its writer's clock) once the key under
/// `older` had expired: the writer saw no key, so what `older` belongs to is a finished
/// incarnation of the key.
fn supersedes(newer: Expiry, older: Expiry) -> bool {
    newer.order() > older.order() && older.at.is_some_and(|at| newer.stamp.physical_ms() >= at)
}

/// Drops from `incoming` the deletions older than `forget_before_ms` of things `stored` does
/// not hold: they were collected here already (or never mattered), and must not come back as
/// tombstones nobody will collect again.
fn forget_collected(stored: Option<&State>, incoming: &State, forget_before_ms: u64) -> State {
    let old = |deleted_at: Option<u64>| deleted_at.is_some_and(|at| at < forget_before_ms);
    let stored_names = |name: &Bytes| -> bool {
        match stored.map(|state| &state.body) {
            Some(Body::Hash(cells)) | Some(Body::ZSet(cells)) => {
                cells.binary_search_by(|(own, _)| own.cmp(name)).is_ok()
            }
            Some(Body::Set(members)) => members.binary_search_by(|(own, _)| own.cmp(name)).is_ok(),
            _ => false,
        }
    };
    let body = match &incoming.body {
        Body::String(cell) => Body::String(cell.clone()),
        Body::Hash(cells) => Body::Hash(
            cells
                .iter()
                .filter(|(name, cell)| !old(cell.deleted_at()) || stored_names(name))
                .cloned()
                .collect(),
        ),
        Body::ZSet(cells) => Body::ZSet(
            cells
                .iter()
                .filter(|(name, cell)| !old(cell.deleted_at()) || stored_names(name))
                .cloned()
                .collect(),
        ),
        Body::Set(members) => Body::Set(
            members
                .iter()
                .filter(|(name, member)| !old(member.deleted_at()) || stored_names(name))
                .cloned()
                .collect(),
        ),
        Body::List(elements) => {
            let held = |element: &Element| match stored.map(|state| &state.body) {
                Some(Body::List(own)) => own.iter().any(|mine| mine.id == element.id),
                _ => false,
            };
            Body::List(
                elements
                    .iter()
                    .filter(|element| {
                        let deleted = match element.register.slot {
                            Slot::Dead { deleted_at } => Some(deleted_at),
                            _ => None,
                        };
                        !old(deleted) || held(element)
                    })
                    .cloned()
                    .collect(),
            )
        }
    };
    State {
        expiry: incoming.expiry,
        body,
    }
}

/// Whether a state holds nothing at all to store: no register ever written, no member, no
/// element.
pub fn is_void(state: &State) -> bool {
    match &state.body {
        Body::String(cell) => cell.register.slot == Slot::Unset && cell.counts.is_empty(),
        Body::Hash(cells) | Body::ZSet(cells) => cells.is_empty(),
        Body::Set(members) => members.is_empty(),
        Body::List(elements) => elements.is_empty(),
    }
}

/// The state a node keeps when it receives `incoming` and holds `stored`, or `None` when it
/// keeps `stored` as it is. Identical on every node:
/// - **Types.** Of two states of different types, the one whose greatest stamp is greater wins
///   entirely. A record of the previous format (`replaces`: a whole value) is treated the
///   same way whatever its type, as that format's last-writer-wins did.
/// - **Incarnations.** When one state's expiry register was written, by its writer's clock, at
///   or after the other's expiry time, the other state is an incarnation of the key that had
///   expired for that writer: it is dropped and the newer one kept whole. So a session written
///   again after it expired never shows the fields of the expired one.
/// - Otherwise the states [`join`].
/// - **Absent keys.** A state that arrives already expired at `now_ms` is ignored where the
///   key is absent; deletions older than `forget_before_ms` of things not stored here are
///   dropped first (they were collected here already).
pub fn merge(
    stored: Option<&State>,
    incoming: &State,
    replaces: bool,
    now_ms: u64,
    forget_before_ms: u64,
) -> Option<State> {
    let incoming = forget_collected(stored, incoming, forget_before_ms);
    let Some(stored) = stored else {
        let ignored = (is_void(&incoming) && incoming.expiry == Expiry::UNSET)
            || incoming.is_expired(now_ms)
            || (!incoming.has_live()
                && incoming
                    .deleted_at()
                    .is_some_and(|at| at < forget_before_ms));
        return (!ignored).then_some(incoming);
    };
    let merged = if replaces || stored.kind() != incoming.kind() {
        let (mine, theirs) = (stored.max_stamp(), incoming.max_stamp());
        if mine > theirs || (mine == theirs && stored.kind() > incoming.kind()) {
            return None;
        }
        if mine == theirs && stored.kind() == incoming.kind() {
            join(stored, &incoming)
        } else {
            incoming
        }
    } else if supersedes(stored.expiry, incoming.expiry) {
        return None;
    } else if supersedes(incoming.expiry, stored.expiry) {
        incoming
    } else {
        join(stored, &incoming)
    };
    (merged != *stored).then_some(merged)
}

/// Tombstone collection: drops every deletion in `state` made before `before_ms` (Unix ms);
/// returns whether anything was dropped. The caller drops a key left showing nothing whose
/// latest deletion ([`State::deleted_at`]) is that old too.
pub fn collect_deletions(state: &mut State, before_ms: u64) -> bool {
    let old = |deleted_at: Option<u64>| deleted_at.is_some_and(|at| at < before_ms);
    match &mut state.body {
        Body::String(cell) => {
            if old(cell.deleted_at()) {
                *cell = Cell::of(Register::UNSET);
                return true;
            }
            false
        }
        Body::Hash(cells) | Body::ZSet(cells) => {
            let before = cells.len();
            cells.retain(|(_, cell)| !old(cell.deleted_at()));
            cells.len() != before
        }
        Body::Set(members) => {
            let before = members.len();
            members.retain(|(_, member)| !old(member.deleted_at()));
            members.len() != before
        }
        Body::List(elements) => {
            let before = elements.len();
            elements.retain(|element| match element.register.slot {
                Slot::Dead { deleted_at } => deleted_at >= before_ms,
                _ => true,
            });
            elements.len() != before
        }
    }
}
