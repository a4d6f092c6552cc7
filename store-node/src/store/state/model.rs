//! The mergeable state of one key, as plain data: an expiry register and a body of the key's
//! type made of registers, counters, set members and list elements, each carrying the stamp of
//! the write that made it. What the types mean and how two states join is in `super::join`;
//! docs/replication.md states each rule and its guarantee.

use bytes::Bytes;

use crate::store::stamp::Stamp;
use crate::store::value::Kind;

/// What a register holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Nothing was ever written: the base of counters created by an increment.
    Unset,
    /// A value.
    Value(Bytes),
    /// Deleted at `deleted_at` (Unix ms, the deleting node's clock): kept so the delete wins
    /// over older writes, collected after the grace period.
    Dead {
        /// When the delete happened (Unix ms).
        deleted_at: u64,
    },
}

impl Slot {
    /// The order of slots written with the same stamp: a delete wins over the value it
    /// observed, and a value over nothing.
    pub fn rank(&self) -> u8 {
        match self {
            Slot::Unset => 0,
            Slot::Value(_) => 1,
            Slot::Dead { .. } => 2,
        }
    }

    /// The value, if the slot holds one.
    pub fn value(&self) -> Option<&Bytes> {
        match self {
            Slot::Value(value) => Some(value),
            _ => None,
        }
    }
}

/// A last-writer-wins register: the greater `(stamp, slot rank)` wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The stamp of the write.
    pub stamp: Stamp,
    /// What it wrote.
    pub slot: Slot,
}

impl Register {
    /// The register nothing was written to.
    pub const UNSET: Register = Register {
        stamp: Stamp::ZERO,
        slot: Slot::Unset,
    };

    /// A register holding `value`.
    pub fn value(stamp: Stamp, value: Bytes) -> Register {
        Register {
            stamp,
            slot: Slot::Value(value),
        }
    }

    /// A deleted register.
    pub fn dead(stamp: Stamp, deleted_at: u64) -> Register {
        Register {
            stamp,
            slot: Slot::Dead { deleted_at },
        }
    }

    /// The key registers are ordered by.
    pub fn order(&self) -> (Stamp, u8) {
        (self.stamp, self.slot.rank())
    }

    /// Whether it holds a deletion.
    pub fn is_dead(&self) -> bool {
        matches!(self.slot, Slot::Dead { .. })
    }
}

/// One origin's increments of a counter since its base: their running total (a decimal
/// number as text for string and hash counters, an `f64` as 8 little-endian bytes for scores)
/// and the stamp of the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// The stamp of the origin's latest increment (its origin is the contributing node).
    pub stamp: Stamp,
    /// The origin's total.
    pub total: Bytes,
}

/// A register that may be a counter: its value is the register's (the base) plus every
/// origin's contribution made on that base. A new base (a write, a delete) drops the
/// contributions of the base it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The base.
    pub register: Register,
    /// Contributions on that base, one per origin, ordered by origin.
    pub counts: Vec<Contribution>,
}

impl Cell {
    /// A plain register.
    pub fn of(register: Register) -> Cell {
        Cell {
            register,
            counts: Vec::new(),
        }
    }

    /// Whether the cell shows a value: its register holds one, or an increment counted on it.
    pub fn is_live(&self) -> bool {
        matches!(self.register.slot, Slot::Value(_)) || !self.counts.is_empty()
    }

    /// The greatest stamp in the cell.
    pub fn max_stamp(&self) -> Stamp {
        self.counts
            .iter()
            .map(|count| count.stamp)
            .fold(self.register.stamp, Stamp::max)
    }

    /// When a cell that shows nothing was deleted (`None` while it shows a value or was never
    /// deleted).
    pub fn deleted_at(&self) -> Option<u64> {
        match self.register.slot {
            Slot::Dead { deleted_at } if self.counts.is_empty() => Some(deleted_at),
            _ => None,
        }
    }
}

/// A member of an add-wins observed-remove set: per origin, the greatest stamp (its `hlc`) of
/// an add from that origin, and the greatest such add stamp a removal observed. The member is
/// present while some origin has an add no removal observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// `(origin, hlc)` of the latest add per origin, ordered by origin.
    pub adds: Vec<(u32, u64)>,
    /// `(origin, hlc)` of the latest add per origin a removal observed, ordered by origin.
    pub removed: Vec<(u32, u64)>,
    /// When the latest removal happened (Unix ms; 0 if never removed).
    pub deleted_at: u64,
}

impl Member {
    /// Whether the member is present.
    pub fn is_live(&self) -> bool {
        self.adds.iter().any(|(origin, hlc)| {
            let removed = self
                .removed
                .iter()
                .find(|(removed, _)| removed == origin)
                .map_or(0, |(_, hlc)| *hlc);
            *hlc > removed
        })
    }

    /// The greatest stamp in the member.
    pub fn max_stamp(&self) -> Stamp {
        self.adds
            .iter()
            .chain(&self.removed)
            .map(|(origin, hlc)| Stamp {
                hlc: *hlc,
                origin: *origin,
            })
            .max()
            .unwrap_or(Stamp::ZERO)
    }

    /// When a member that is not present was removed (`None` while present).
    pub fn deleted_at(&self) -> Option<u64> {
        (!self.is_live()).then_some(self.deleted_at)
    }
}

/// The identity of a list element: the stamp of the write that pushed it and its index among
/// the elements of that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElementId {
    /// The pushing write's stamp.
    pub stamp: Stamp,
    /// Its index within that write.
    pub index: u32,
}

/// A list element: its identity, its place (a position key compared as bytes, see
/// `super::position`) and its value as a register (`LSET` writes it, a pop deletes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The element's identity.
    pub id: ElementId,
    /// Where it sits: the list is ordered by `(position, id)`.
    pub position: Bytes,
    /// Its value, or its deletion.
    pub register: Register,
}

impl Element {
    /// The greatest stamp in the element.
    pub fn max_stamp(&self) -> Stamp {
        self.id.stamp.max(self.register.stamp)
    }

    /// The key elements are ordered by.
    pub fn order(&self) -> (&[u8], ElementId) {
        (&self.position, self.id)
    }
}

/// The key's expiry register: the absolute expiry (Unix ms, `None` = persistent) and the stamp
/// of the write that set it. The greater stamp wins; with equal stamps the later expiry does
/// (persistent counts as latest), which is what a touch (a sliding expiry) relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Absolute expiry.
    pub at: Option<u64>,
    /// The stamp of the write that set it.
    pub stamp: Stamp,
}

impl Expiry {
    /// The register nothing was written to: persistent.
    pub const UNSET: Expiry = Expiry {
        at: None,
        stamp: Stamp::ZERO,
    };

    /// The key registers are ordered by.
    pub fn order(&self) -> (Stamp, u64) {
        (self.stamp, self.at.unwrap_or(u64::MAX))
    }
}

/// What a key holds, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A string, possibly a counter.
    String(Cell),
    /// Fields ordered by name.
    Hash(Vec<(Bytes, Cell)>),
    /// Members ordered by name.
    Set(Vec<(Bytes, Member)>),
    /// Members ordered by name; each cell holds the score as 8 little-endian bytes of an
    /// `f64`, a counter for `ZINCRBY`.
    ZSet(Vec<(Bytes, Cell)>),
    /// Elements ordered by `(position, id)`.
    List(Vec<Element>),
}

impl Body {
    /// An empty body of `kind` (a string with nothing written).
    pub fn empty(kind: Kind) -> Body {
        match kind {
            Kind::String => Body::String(Cell::of(Register::UNSET)),
            Kind::Hash => Body::Hash(Vec::new()),
            Kind::Set => Body::Set(Vec::new()),
            Kind::ZSet => Body::ZSet(Vec::new()),
            Kind::List => Body::List(Vec::new()),
        }
    }

    /// The type.
    pub fn kind(&self) -> Kind {
        match self {
            Body::String(_) => Kind::String,
            Body::Hash(_) => Kind::Hash,
            Body::Set(_) => Kind::Set,
            Body::ZSet(_) => Kind::ZSet,
            Body::List(_) => Kind::List,
        }
    }
}

/// The whole mergeable state of a key (or a delta: the part of it one write changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The expiry register.
    pub expiry: Expiry,
    /// The content.
    pub body: Body,
}

impl State {
    /// An empty state of `kind`, persistent.
    pub fn empty(kind: Kind) -> State {
        State {
            expiry: Expiry::UNSET,
            body: Body::empty(kind),
        }
    }

    /// The type.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// The greatest stamp anywhere in the state: which of two states of different types wins.
    pub fn max_stamp(&self) -> Stamp {
        let body = match &self.body {
            Body::String(cell) => cell.max_stamp(),
            Body::Hash(cells) | Body::ZSet(cells) => cells
                .iter()
                .map(|(_, cell)| cell.max_stamp())
                .max()
                .unwrap_or(Stamp::ZERO),
            Body::Set(members) => members
                .iter()
                .map(|(_, member)| member.max_stamp())
                .max()
                .unwrap_or(Stamp::ZERO),
            Body::List(elements) => elements
                .iter()
                .map(Element::max_stamp)
                .max()
                .unwrap_or(Stamp::ZERO),
        };
        body.max(self.expiry.stamp)
    }

    /// Whether the key shows a value (ignoring expiry): some register, counter, member or
    /// element is live.
    pub fn has_live(&self) -> bool {
        match &self.body {
            Body::String(cell) => cell.is_live(),
            Body::Hash(cells) | Body::ZSet(cells) => cells.iter().any(|(_, cell)| cell.is_live()),
            Body::Set(members) => members.iter().any(|(_, member)| member.is_live()),
            Body::List(elements) => elements
                .iter()
                .any(|element| matches!(element.register.slot, Slot::Value(_))),
        }
    }

    /// Whether the state holds deletions that tombstone collection must one day drop.
    pub fn has_dead(&self) -> bool {
        match &self.body {
            Body::String(cell) => cell.register.is_dead(),
            Body::Hash(cells) | Body::ZSet(cells) => {
                cells.iter().any(|(_, cell)| cell.deleted_at().is_some())
            }
            Body::Set(members) => members.iter().any(|(_, member)| !member.is_live()),
            Body::List(elements) => elements.iter().any(|element| element.register.is_dead()),
        }
    }

    /// Whether the key has expired at `now` (Unix ms).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expiry.at.is_some_and(|at| at <= now)
    }

    /// When a key that shows nothing (ignoring expiry) was deleted: the latest deletion in it,
    /// or for a state holding no deletion (an expiry change that arrived before the key) when
    /// its expiry register was written (`None` while it shows a value).
    pub fn deleted_at(&self) -> Option<u64> {
        if self.has_live() {
            return None;
        }
        let latest = match &self.body {
            Body::String(cell) => cell.deleted_at(),
            Body::Hash(cells) | Body::ZSet(cells) => {
                cells.iter().filter_map(|(_, cell)| cell.deleted_at()).max()
            }
            Body::Set(members) => members
                .iter()
                .filter_map(|(_, member)| member.deleted_at())
                .max(),
            Body::List(elements) => elements
                .iter()
                .filter_map(|element| match element.register.slot {
                    Slot::Dead { deleted_at } => Some(deleted_at),
                    _ => None,
                })
                .max(),
        };
        Some(latest.unwrap_or(self.expiry.stamp.physical_ms()))
    }
}
