//! The compact encoding of a key's state, one format for a stored entry, a peer record, the
//! write-ahead log and snapshots: a [`Header`] (type, flags, expiry, greatest stamp) and a
//! payload. Copying a stored entry to the wire, or a record into an entry, is a copy of bytes.
//!
//! Payload forms:
//! - **Plain** (no per-element metadata): every entry of one node in RAM (no stamps at all),
//!   and a versioned string whose register and expiry register both carry the header's stamp
//!   and which counts nothing (a `SET` result): the string itself, or its deletion time as
//!   8 little-endian bytes. So a replicated `SET` costs what it cost before.
//! - **Versioned**: `state hash u64 | origins | expiry stamp | body`, where every stamp is a
//!   *stamp reference*: `varint(max.hlc - hlc + 1)` (0 = the zero stamp) and, unless zero,
//!   `varint(index in the origins table)`. Names, values and positions are `varint len |
//!   bytes`; deletion times varints.
//!
//! Decoding checks everything (lengths, indexes, orders) and never panics whatever the bytes.

use bytes::Bytes;

use super::model::{
    Body, Cell, Contribution, Element, ElementId, Expiry, Member, Register, Slot, State,
};
use crate::store::stamp::Stamp;
use crate::store::value::{put_varint, read_varint, Kind};

/// What is wrong with bytes that should hold a state (or a record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ended before a field.
    #[error("truncated message body")]
    Truncated,
    /// A field has an invalid value.
    #[error("invalid field {0}")]
    Invalid(&'static str),
}

const KIND_MASK: u8 = 0b111;
const HAS_EXPIRY: u8 = 1 << 3;
const HAS_STAMP: u8 = 1 << 4;
const ABSENT: u8 = 1 << 5;
const PLAIN: u8 = 1 << 6;
const HAS_DEAD: u8 = 1 << 7;

/// What a stored entry and a record keep outside the payload: enough to answer the type, the
/// expiry and the version of a key without decoding its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The type.
    pub kind: Kind,
    /// The expiry register's value.
    pub expire_at: Option<u64>,
    /// The greatest stamp in the state (`None`: one node in RAM, nothing is stamped).
    pub stamp: Option<Stamp>,
    /// The key shows nothing (every register deleted): absent to reads.
    pub absent: bool,
    /// The payload is plain (see the module documentation).
    pub plain: bool,
    /// The state holds deletions to collect one day.
    pub has_dead: bool,
}

impl Header {
    /// The flags byte: bits 0-2 the kind, then expiry, stamp, absent, plain, has-dead.
    pub fn flags(&self) -> u8 {
        let mut flags = self.kind.tag();
        for (set, bit) in [
            (self.expire_at.is_some(), HAS_EXPIRY),
            (self.stamp.is_some(), HAS_STAMP),
            (self.absent, ABSENT),
            (self.plain, PLAIN),
            (self.has_dead, HAS_DEAD),
        ] {
            if set {
                flags |= bit;
            }
        }
        flags
    }

    /// Whether `flags` says an expiry follows.
    pub fn flags_expiry(flags: u8) -> bool {
        flags & HAS_EXPIRY != 0
    }

    /// Whether `flags` says a stamp follows.
    pub fn flags_stamp(flags: u8) -> bool {
        flags & HAS_STAMP != 0
    }

    /// The header of `flags` with the expiry and stamp read after it.
    pub fn from_flags(
        flags: u8,
        expire_at: Option<u64>,
        stamp: Option<Stamp>,
    ) -> Result<Header, DecodeError> {
        let kind = Kind::from_tag(flags & KIND_MASK).ok_or(DecodeError::Invalid("value kind"))?;
        if Header::flags_expiry(flags) != expire_at.is_some()
            || Header::flags_stamp(flags) != stamp.is_some()
        {
            return Err(DecodeError::Invalid("header flags"));
        }
        Ok(Header {
            kind,
            expire_at,
            stamp,
            absent: flags & ABSENT != 0,
            plain: flags & PLAIN != 0 || stamp.is_none(),
            has_dead: flags & HAS_DEAD != 0,
        })
    }
}

/// The splitmix64 finaliser: fixed, so every node and every build hashes states alike.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// 64-bit FNV-1a of a name (fixed across builds).
fn name_hash(name: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in name {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// One part of a state hash: what it is (`tag`), which element (`name`), its stamp and rank.
fn part(tag: u64, name: u64, stamp: Stamp, rank: u64) -> u64 {
    mix(mix(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name)
        ^ mix(stamp.hlc)
        ^ mix(u64::from(stamp.origin) << 8 | rank))
}

fn cell_hash(tag: u64, name: u64, cell: &Cell) -> u64 {
    let mut sum = part(
        tag,
        name,
        cell.register.stamp,
        u64::from(cell.register.slot.rank()),
    );
    for count in &cell.counts {
        sum = sum.wrapping_add(part(tag + 1, name, count.stamp, 0));
    }
    sum
}

/// The state's version for anti-entropy: the wrapping sum of a hash of every register,
/// contribution, add, observed removal and element with its stamp and whether it is a
/// deletion. Two nodes holding the same writes have the same hash whatever the order they
/// merged them in; a state that gained anything (an older field merged in) has another.
pub fn state_hash(state: &State) -> u64 {
    let mut sum = part(1, 0, state.expiry.stamp, 0);
    match &state.body {
        Body::String(cell) => sum = sum.wrapping_add(cell_hash(2, 0, cell)),
        Body::Hash(cells) | Body::ZSet(cells) => {
            let tag = if state.kind() == Kind::Hash { 4 } else { 10 };
            for (name, cell) in cells {
                sum = sum.wrapping_add(cell_hash(tag, name_hash(name), cell));
            }
        }
        Body::Set(members) => {
            for (name, member) in members {
                let name = name_hash(name);
                for (origin, hlc) in &member.adds {
                    let stamp = Stamp {
                        hlc: *hlc,
                        origin: *origin,
                    };
                    sum = sum.wrapping_add(part(6, name, stamp, 0));
                }
                for (origin, hlc) in &member.removed {
                    let stamp = Stamp {
                        hlc: *hlc,
                        origin: *origin,
                    };
                    sum = sum.wrapping_add(part(7, name, stamp, 0));
                }
            }
        }
        Body::List(elements) => {
            for element in elements {
                let id = mix(element.id.stamp.hlc ^ mix(u64::from(element.id.stamp.origin)))
                    ^ u64::from(element.id.index);
                sum = sum.wrapping_add(part(
                    8,
                    id,
                    element.register.stamp,
                    u64::from(element.register.slot.rank()),
                ));
            }
        }
    }
    sum
}

/// The state hash of a plain versioned string stamped `stamp` (live or deleted), without
/// building the state.
pub fn plain_hash(stamp: Stamp, absent: bool) -> u64 {
    let rank = if absent { 2 } else { 1 };
    part(1, 0, stamp, 0).wrapping_add(part(2, 0, stamp, rank))
}

/// Whether a versioned `state` takes the plain form.
fn is_plain(state: &State, max: Stamp) -> bool {
    match &state.body {
        Body::String(cell) => {
            cell.counts.is_empty()
                && cell.register.stamp == max
                && state.expiry.stamp == max
                && !matches!(cell.register.slot, Slot::Unset)
        }
        _ => false,
    }
}

/// Encodes a state: versioned (stamps kept) or not (one node in RAM: no stamps, no deletions,
/// counters already folded into their values).
pub fn encode(state: &State, versioned: bool) -> (Header, Vec<u8>) {
    let max = state.max_stamp();
    let live = state.has_live();
    let mut header = Header {
        kind: state.kind(),
        expire_at: state.expiry.at,
        stamp: versioned.then_some(max),
        absent: !live,
        plain: !versioned || is_plain(state, max),
        // A state showing nothing is always a candidate for collection.
        has_dead: versioned && (state.has_dead() || !live),
    };
    let mut out = Vec::new();
    if !versioned {
        header.has_dead = false;
        encode_unversioned(state, &mut out);
        return (header, out);
    }
    if header.plain {
        if let Body::String(cell) = &state.body {
            match &cell.register.slot {
                Slot::Value(value) => out.extend_from_slice(value),
                Slot::Dead { deleted_at } => out.extend_from_slice(&deleted_at.to_le_bytes()),
                Slot::Unset => {}
            }
        }
        return (header, out);
    }
    let mut origins: Vec<u32> = Vec::new();
    collect_origins(state, &mut origins);
    origins.sort_unstable();
    let writer = Writer { max, origins };
    out.extend_from_slice(&state_hash(state).to_le_bytes());
    put_varint(&mut out, writer.origins.len() as u64);
    for origin in &writer.origins {
        out.extend_from_slice(&origin.to_le_bytes());
    }
    writer.stamp(&mut out, state.expiry.stamp);
    match &state.body {
        Body::String(cell) => writer.cell(&mut out, cell),
        Body::Hash(cells) | Body::ZSet(cells) => {
            put_varint(&mut out, cells.len() as u64);
            for (name, cell) in cells {
                put_bytes(&mut out, name);
                writer.cell(&mut out, cell);
            }
        }
        Body::Set(members) => {
            put_varint(&mut out, members.len() as u64);
            for (name, member) in members {
                put_bytes(&mut out, name);
                writer.maxima(&mut out, &member.adds);
                writer.maxima(&mut out, &member.removed);
                put_varint(&mut out, member.deleted_at);
            }
        }
        Body::List(elements) => {
            put_varint(&mut out, elements.len() as u64);
            for element in elements {
                writer.stamp(&mut out, element.id.stamp);
                put_varint(&mut out, u64::from(element.id.index));
                put_bytes(&mut out, &element.position);
                writer.register(&mut out, &element.register, false);
            }
        }
    }
    (header, out)
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn encode_unversioned(state: &State, out: &mut Vec<u8>) {
    match &state.body {
        Body::String(cell) => {
            if let Slot::Value(value) = &cell.register.slot {
                out.extend_from_slice(value);
            }
        }
        Body::Hash(cells) => {
            for (name, cell) in cells {
                if let Slot::Value(value) = &cell.register.slot {
                    put_bytes(out, name);
                    put_bytes(out, value);
                }
            }
        }
        Body::ZSet(cells) => {
            for (name, cell) in cells {
                if let Slot::Value(value) = &cell.register.slot {
                    put_bytes(out, name);
                    out.extend_from_slice(value);
                }
            }
        }
        Body::Set(members) => {
            for (name, member) in members {
                if member.is_live() {
                    put_bytes(out, name);
                }
            }
        }
        Body::List(elements) => {
            for element in elements {
                if let Slot::Value(value) = &element.register.slot {
                    put_bytes(out, value);
                }
            }
        }
    }
}

/// Collects the distinct origins of a state's stamps (a handful: one per node that wrote it).
fn collect_origins(state: &State, origins: &mut Vec<u32>) {
    fn add(origins: &mut Vec<u32>, origin: u32) {
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    fn push(origins: &mut Vec<u32>, stamp: Stamp) {
        if stamp != Stamp::ZERO {
            add(origins, stamp.origin);
        }
    }
    fn cell(origins: &mut Vec<u32>, cell: &Cell) {
        push(origins, cell.register.stamp);
        for count in &cell.counts {
            push(origins, count.stamp);
        }
    }
    push(origins, state.expiry.stamp);
    match &state.body {
        Body::String(one) => cell(origins, one),
        Body::Hash(cells) | Body::ZSet(cells) => {
            for (_, one) in cells {
                cell(origins, one);
            }
        }
        Body::Set(members) => {
            for (_, member) in members {
                for (origin, _) in member.adds.iter().chain(&member.removed) {
                    add(origins, *origin);
                }
            }
        }
        Body::List(elements) => {
            for element in elements {
                push(origins, element.id.stamp);
                push(origins, element.register.stamp);
            }
        }
    }
}

/// Writes stamps as references to the greatest stamp and the origins table.
struct Writer {
    max: Stamp,
    origins: Vec<u32>,
}

impl Writer {
    fn origin_index(&self, origin: u32) -> u64 {
        self.origins.binary_search(&origin).unwrap_or(0) as u64
    }

    fn stamp(&self, out: &mut Vec<u8>, stamp: Stamp) {
        if stamp == Stamp::ZERO {
            put_varint(out, 0);
            return;
        }
        put_varint(
            out,
            self.max.hlc.saturating_sub(stamp.hlc).saturating_add(1),
        );
        put_varint(out, self.origin_index(stamp.origin));
    }

    fn register(&self, out: &mut Vec<u8>, register: &Register, counts: bool) {
        self.stamp(out, register.stamp);
        out.push(register.slot.rank() | if counts { 4 } else { 0 });
        match &register.slot {
            Slot::Unset => {}
            Slot::Value(value) => put_bytes(out, value),
            Slot::Dead { deleted_at } => put_varint(out, *deleted_at),
        }
    }

    fn cell(&self, out: &mut Vec<u8>, cell: &Cell) {
        self.register(out, &cell.register, !cell.counts.is_empty());
        if !cell.counts.is_empty() {
            put_varint(out, cell.counts.len() as u64);
            for count in &cell.counts {
                self.stamp(out, count.stamp);
                put_bytes(out, &count.total);
            }
        }
    }

    fn maxima(&self, out: &mut Vec<u8>, maxima: &[(u32, u64)]) {
        put_varint(out, maxima.len() as u64);
        for (origin, hlc) in maxima {
            put_varint(out, self.origin_index(*origin));
            put_varint(out, self.max.hlc.saturating_sub(*hlc));
        }
    }
}

/// A bounds-checked reader over a payload. Names and values are slices of one copy of the
/// payload (`owner`), so decoding a state of n fields allocates once, not 2n times; a reader
/// without an owner (one that only peeks at stamps) copies what it reads.
struct Reader<'a> {
    data: &'a [u8],
    owner: Option<Bytes>,
    position: usize,
    max: Stamp,
    origins: Vec<u32>,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        read_varint(self.data, &mut self.position).ok_or(DecodeError::Truncated)
    }

    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let count = self.varint()?;
        let left = (self.data.len() - self.position) as u64;
        if count.saturating_mul(min_item as u64) > left {
            return Err(DecodeError::Truncated);
        }
        Ok(count as usize)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or(DecodeError::Truncated)?;
        let out = &self.data[self.position..end];
        self.position = end;
        Ok(out)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
        let start = self.position;
        self.take(len)?;
        let end = start + len;
        Ok(match &self.owner {
            Some(owner) => owner.slice(start..end),
            None => Bytes::copy_from_slice(&self.data[start..end]),
        })
    }

    fn origin(&mut self) -> Result<u32, DecodeError> {
        let index = self.varint()?;
        usize::try_from(index)
            .ok()
            .and_then(|index| self.origins.get(index).copied())
            .ok_or(DecodeError::Invalid("origin index"))
    }

    fn stamp(&mut self) -> Result<Stamp, DecodeError> {
        let delta = self.varint()?;
        if delta == 0 {
            return Ok(Stamp::ZERO);
        }
        let hlc = self
            .max
            .hlc
            .checked_sub(delta - 1)
            .ok_or(DecodeError::Invalid("stamp"))?;
        Ok(Stamp {
            hlc,
            origin: self.origin()?,
        })
    }

    /// A register and whether contributions follow it.
    fn register(&mut self) -> Result<(Register, bool), DecodeError> {
        let stamp = self.stamp()?;
        let tag = self.take(1)?[0];
        let slot = match tag & 3 {
            0 => Slot::Unset,
            1 => Slot::Value(self.bytes()?),
            2 => Slot::Dead {
                deleted_at: self.varint()?,
            },
            _ => return Err(DecodeError::Invalid("register")),
        };
        if tag & !7 != 0 {
            return Err(DecodeError::Invalid("register"));
        }
        Ok((Register { stamp, slot }, tag & 4 != 0))
    }

    fn cell(&mut self) -> Result<Cell, DecodeError> {
        let (register, counted) = self.register()?;
        let mut counts = Vec::new();
        if counted {
            let count = self.count(2)?;
            for _ in 0..count {
                let stamp = self.stamp()?;
                let total = self.bytes()?;
                if counts
                    .last()
                    .is_some_and(|last: &Contribution| last.stamp.origin >= stamp.origin)
                {
                    return Err(DecodeError::Invalid("contribution order"));
                }
                counts.push(Contribution { stamp, total });
            }
        }
        Ok(Cell { register, counts })
    }

    fn maxima(&mut self) -> Result<Vec<(u32, u64)>, DecodeError> {
        let count = self.count(2)?;
        let mut out: Vec<(u32, u64)> = Vec::with_capacity(count);
        for _ in 0..count {
            let origin = self.origin()?;
            let delta = self.varint()?;
            let hlc = self
                .max
                .hlc
                .checked_sub(delta)
                .ok_or(DecodeError::Invalid("member stamp"))?;
            if out.last().is_some_and(|(last, _)| *last >= origin) {
                return Err(DecodeError::Invalid("member order"));
            }
            out.push((origin, hlc));
        }
        Ok(out)
    }

    fn done(&self) -> Result<(), DecodeError> {
        if self.position != self.data.len() {
            return Err(DecodeError::Invalid("trailing state bytes"));
        }
        Ok(())
    }
}

fn check_names<T>(items: &[(Bytes, T)]) -> Result<(), DecodeError> {
    if items.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        return Err(DecodeError::Invalid("name order"));
    }
    Ok(())
}

/// Decodes the state a header and payload encode.
pub fn decode(header: &Header, payload: &[u8]) -> Result<State, DecodeError> {
    let Some(max) = header.stamp else {
        return decode_unversioned(header, payload);
    };
    if header.plain {
        if header.kind != Kind::String {
            return Err(DecodeError::Invalid("plain payload of a collection"));
        }
        let slot = if header.absent {
            let at: [u8; 8] = payload
                .try_into()
                .map_err(|_| DecodeError::Invalid("deletion time"))?;
            Slot::Dead {
                deleted_at: u64::from_le_bytes(at),
            }
        } else {
            Slot::Value(Bytes::copy_from_slice(payload))
        };
        return Ok(State {
            expiry: Expiry {
                at: header.expire_at,
                stamp: max,
            },
            body: Body::String(Cell::of(Register { stamp: max, slot })),
        });
    }
    if payload.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    let owner = Bytes::copy_from_slice(payload);
    let mut reader = Reader {
        data: &owner,
        owner: Some(owner.clone()),
        position: 8,
        max,
        origins: Vec::new(),
    };
    let origins = reader.count(4)?;
    for _ in 0..origins {
        let bytes: [u8; 4] = reader
            .take(4)?
            .try_into()
            .map_err(|_| DecodeError::Truncated)?;
        reader.origins.push(u32::from_le_bytes(bytes));
    }
    if reader.origins.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(DecodeError::Invalid("origin order"));
    }
    let expiry = Expiry {
        at: header.expire_at,
        stamp: reader.stamp()?,
    };
    let body = match header.kind {
        Kind::String => Body::String(reader.cell()?),
        Kind::Hash | Kind::ZSet => {
            let count = reader.count(3)?;
            let mut cells = Vec::with_capacity(count);
            for _ in 0..count {
                let name = reader.bytes()?;
                cells.push((name, reader.cell()?));
            }
            check_names(&cells)?;
            if header.kind == Kind::Hash {
                Body::Hash(cells)
            } else {
                Body::ZSet(cells)
            }
        }
        Kind::Set => {
            let count = reader.count(4)?;
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                let name = reader.bytes()?;
                let adds = reader.maxima()?;
                let removed = reader.maxima()?;
                let deleted_at = reader.varint()?;
                members.push((
                    name,
                    Member {
                        adds,
                        removed,
                        deleted_at,
                    },
                ));
            }
            check_names(&members)?;
            Body::Set(members)
        }
        Kind::List => {
            let count = reader.count(5)?;
            let mut elements: Vec<Element> = Vec::with_capacity(count);
            for _ in 0..count {
                let stamp = reader.stamp()?;
                let index = u32::try_from(reader.varint()?)
                    .map_err(|_| DecodeError::Invalid("element index"))?;
                let position = reader.bytes()?;
                let (register, counted) = reader.register()?;
                if counted {
                    return Err(DecodeError::Invalid("counted list element"));
                }
                elements.push(Element {
                    id: ElementId { stamp, index },
                    position,
                    register,
                });
            }
            if elements
                .windows(2)
                .any(|pair| pair[0].order() >= pair[1].order())
            {
                return Err(DecodeError::Invalid("element order"));
            }
            let mut ids: Vec<ElementId> = elements.iter().map(|element| element.id).collect();
            ids.sort_unstable();
            if ids.windows(2).any(|pair| pair[0] == pair[1]) {
                return Err(DecodeError::Invalid("duplicate element"));
            }
            Body::List(elements)
        }
    };
    reader.done()?;
    let state = State { expiry, body };
    if state.max_stamp() != max {
        return Err(DecodeError::Invalid("greatest stamp"));
    }
    Ok(state)
}

fn decode_unversioned(header: &Header, payload: &[u8]) -> Result<State, DecodeError> {
    let owner = Bytes::copy_from_slice(payload);
    let mut reader = Reader {
        data: &owner,
        owner: Some(owner.clone()),
        position: 0,
        max: Stamp::ZERO,
        origins: Vec::new(),
    };
    let value = |bytes: Bytes| Cell::of(Register::value(Stamp::ZERO, bytes));
    let body = match header.kind {
        Kind::String => Body::String(value(owner.clone())),
        Kind::Hash => {
            let mut cells = Vec::new();
            while reader.position < payload.len() {
                let name = reader.bytes()?;
                cells.push((name, value(reader.bytes()?)));
            }
            Body::Hash(cells)
        }
        Kind::ZSet => {
            let mut cells = Vec::new();
            while reader.position < payload.len() {
                let name = reader.bytes()?;
                let start = reader.position;
                reader.take(8)?;
                cells.push((name, value(owner.slice(start..start + 8))));
            }
            Body::ZSet(cells)
        }
        Kind::Set => {
            let mut members = Vec::new();
            while reader.position < payload.len() {
                let member = Member {
                    adds: vec![(0, 1)],
                    removed: Vec::new(),
                    deleted_at: 0,
                };
                members.push((reader.bytes()?, member));
            }
            Body::Set(members)
        }
        Kind::List => {
            let mut elements = Vec::new();
            while reader.position < payload.len() {
                let index = elements.len() as u32;
                elements.push(Element {
                    id: ElementId {
                        stamp: Stamp::ZERO,
                        index,
                    },
                    position: Bytes::new(),
                    register: Register::value(Stamp::ZERO, reader.bytes()?),
                });
            }
            Body::List(elements)
        }
    };
    Ok(State {
        expiry: Expiry {
            at: header.expire_at,
            stamp: Stamp::ZERO,
        },
        body,
    })
}

/// The state hash of an encoded versioned state without decoding it (`None` unversioned).
pub fn encoded_hash(header: &Header, payload: &[u8]) -> Option<u64> {
    let stamp = header.stamp?;
    if header.plain {
        return Some(plain_hash(stamp, header.absent));
    }
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The stamp of the expiry register of an encoded state, without decoding the body (the
/// version a sliding-expiry touch refers to); `None` unversioned.
pub fn encoded_expiry_stamp(header: &Header, payload: &[u8]) -> Option<Stamp> {
    let max = header.stamp?;
    if header.plain {
        return Some(max);
    }
    let mut reader = Reader {
        data: payload,
        owner: None,
        position: 8,
        max,
        origins: Vec::new(),
    };
    let origins = reader.count(4).ok()?;
    for _ in 0..origins {
        let bytes: [u8; 4] = reader.take(4).ok()?.try_into().ok()?;
        reader.origins.push(u32::from_le_bytes(bytes));
    }
    reader.stamp().ok()
}
