//! The value model as clients see it: every type a key can hold ([`Kind`]) and a whole visible
//! value ([`Value`], owned), plus the LEB128 varints the compact encodings are made of. What a
//! node stores and replicates is richer, the key's mergeable state (`super::state`): a value
//! is what that state shows.

use bytes::Bytes;

/// The type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A binary-safe string (counters are strings).
    String,
    /// A hash of fields to values.
    Hash,
    /// A set of members.
    Set,
    /// A sorted set: members with a score each.
    ZSet,
    /// A list of elements.
    List,
}

impl Kind {
    /// Every kind, by tag.
    pub const ALL: [Kind; 5] = [Kind::String, Kind::Hash, Kind::Set, Kind::ZSet, Kind::List];

    /// The name `TYPE` reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
        }
    }

    /// The kind `TYPE` names `name` (case-insensitive), for `SCAN ... TYPE`.
    pub fn from_name(name: &[u8]) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The tag a stored entry and a record keep the type in (three bits).
    pub fn tag(self) -> u8 {
        match self {
            Kind::String => 0,
            Kind::Hash => 1,
            Kind::Set => 2,
            Kind::ZSet => 3,
            Kind::List => 4,
        }
    }

    /// The type of a tag, `None` for a tag no type has.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(tag)).copied()
    }
}

/// A whole visible value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    String(Bytes),
    /// A hash, as field/value pairs.
    Hash(Vec<(Bytes, Bytes)>),
    /// A set, as its members.
    Set(Vec<Bytes>),
    /// A sorted set, as member/score pairs.
    ZSet(Vec<(Bytes, f64)>),
    /// A list, in order.
    List(Vec<Bytes>),
}

impl Value {
    /// The value's type.
    pub fn kind(&self) -> Kind {
        match self {
            Value::String(_) => Kind::String,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::List(_) => Kind::List,
        }
    }

    /// Approximate size in bytes of the value's data (for limits).
    pub fn size(&self) -> usize {
        match self {
            Value::String(data) => data.len(),
            Value::Hash(fields) => fields
                .iter()
                .map(|(field, value)| field.len() + value.len() + 2)
                .sum(),
            Value::Set(members) | Value::List(members) => {
                members.iter().map(|member| member.len() + 1).sum()
            }
            Value::ZSet(members) => members.iter().map(|(member, _)| member.len() + 9).sum(),
        }
    }
}

/// Appends `value` as LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 value at `position`, advancing it; `None` when the bytes end first or the
/// value does not fit 64 bits.
pub fn read_varint(data: &[u8], position: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let byte = *data.get(*position)?;
        *position += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads a LEB128 value written by this process at `position` (a stored entry's own layout):
/// a short read gives 0 rather than a panic.
#[inline]
pub fn get_varint(data: &[u8], position: &mut usize) -> usize {
    // One byte for a key under 128 bytes: every lookup of a stored key reads its length.
    if let Some(&byte) = data.get(*position) {
        if byte < 0x80 {
            *position += 1;
            return usize::from(byte);
        }
    }
    read_varint(data, position).unwrap_or(0) as usize
}

/// Encoded length of `value` as LEB128.
pub fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_garbage() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            let mut position = 0;
            assert_eq!(read_varint(&out, &mut position), Some(value));
            assert_eq!(position, out.len());
        }
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX)] {
            let mut out = vec![9];
            put_varint(&mut out, value);
            let mut position = 1;
            assert_eq!(get_varint(&out, &mut position) as u64, value);
            assert_eq!(position, out.len());
        }
        let mut position = 1;
        assert_eq!(get_varint(&[0], &mut position), 0);
        let mut position = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut position), None);
        let mut position = 0;
        assert_eq!(read_varint(&[0xff; 11], &mut position), None);
    }

    #[test]
    fn kinds_round_trip_their_tags_and_names() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_tag(kind.tag()), Some(kind));
            assert_eq!(Kind::from_name(kind.name().as_bytes()), Some(kind));
        }
        assert_eq!(Kind::from_tag(5), None);
        assert_eq!(Kind::from_name(b"ZSET"), Some(Kind::ZSet));
    }
}
