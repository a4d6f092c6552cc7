//! The value model: every type a key can hold, as one enum ([`Value`], owned; [`ValueView`],
//! borrowed from a stored entry or a record) with its type tag ([`Kind`]) and the compact
//! payload encoding a stored entry keeps it in. A new type is a new variant of each enum here,
//! its payload codec beside it, its wire encoding in [`super::codec`] and its merge rule in
//! [`super::record::merge`].

use std::borrow::Cow;

use bytes::Bytes;

/// The type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A binary-safe string.
    String,
    /// A hash of fields to values.
    Hash,
}

impl Kind {
    /// The name `TYPE` reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
        }
    }

    /// The tag a stored entry keeps the type in (two bits).
    pub fn tag(self) -> u8 {
        match self {
            Kind::String => 0,
            Kind::Hash => 1,
        }
    }

    /// The type of a stored tag.
    pub fn from_tag(tag: u8) -> Kind {
        match tag {
            1 => Kind::Hash,
            _ => Kind::String,
        }
    }
}

/// A whole value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    String(Bytes),
    /// A hash, as field/value pairs.
    Hash(Vec<(Bytes, Bytes)>),
}

impl Value {
    /// The value's type.
    pub fn kind(&self) -> Kind {
        match self {
            Value::String(_) => Kind::String,
            Value::Hash(_) => Kind::Hash,
        }
    }

    /// The value, borrowed.
    pub fn view(&self) -> ValueView<'_> {
        match self {
            Value::String(data) => ValueView::String(data),
            Value::Hash(fields) => ValueView::Hash(fields),
        }
    }

    /// The payload a stored entry keeps the value in (a string is its own payload).
    pub fn payload(&self) -> Cow<'_, [u8]> {
        match self {
            Value::String(data) => Cow::Borrowed(data),
            Value::Hash(fields) => Cow::Owned(encode_hash(
                fields.iter().map(|(field, value)| (&field[..], &value[..])),
            )),
        }
    }
}

/// A value, borrowed.
#[derive(Clone)]
pub enum ValueView<'a> {
    /// A string.
    String(&'a [u8]),
    /// A hash, as field/value pairs.
    Hash(&'a [(Bytes, Bytes)]),
    /// A hash, as a stored entry's encoded payload.
    StoredHash(HashIter<'a>),
}

impl<'a> ValueView<'a> {
    /// The value's type.
    pub fn kind(&self) -> Kind {
        match self {
            ValueView::String(_) => Kind::String,
            ValueView::Hash(_) | ValueView::StoredHash(_) => Kind::Hash,
        }
    }

    /// The value a stored entry of type `kind` keeps in `payload`.
    pub fn from_payload(kind: Kind, payload: &'a [u8]) -> ValueView<'a> {
        match kind {
            Kind::String => ValueView::String(payload),
            Kind::Hash => ValueView::StoredHash(HashIter::new(payload)),
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match self {
            ValueView::String(data) => Value::String(Bytes::copy_from_slice(data)),
            ValueView::Hash(fields) => Value::Hash(fields.to_vec()),
            stored => {
                let mut fields = Vec::new();
                stored.for_each_pair(|field, value| {
                    fields.push((Bytes::copy_from_slice(field), Bytes::copy_from_slice(value)))
                });
                Value::Hash(fields)
            }
        }
    }

    /// Calls `visit` with every field/value pair of a hash (nothing for a string).
    pub fn for_each_pair(&self, mut visit: impl FnMut(&'a [u8], &'a [u8])) {
        match self {
            ValueView::String(_) => {}
            ValueView::Hash(fields) => {
                for (field, value) in fields.iter() {
                    visit(field, value);
                }
            }
            ValueView::StoredHash(pairs) => {
                for (field, value) in pairs.clone() {
                    visit(field, value);
                }
            }
        }
    }
}

/// Encodes hash fields into a payload.
pub fn encode_hash<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, value) in fields {
        put_varint(&mut out, field.len());
        out.extend_from_slice(field);
        put_varint(&mut out, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// Iterates over the `(field, value)` pairs of a hash payload.
#[derive(Clone)]
pub struct HashIter<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> HashIter<'a> {
    /// The pairs of an encoded hash payload (see [`encode_hash`]).
    pub fn new(data: &'a [u8]) -> HashIter<'a> {
        HashIter { data, position: 0 }
    }
}

impl<'a> Iterator for HashIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.data.len() {
            return None;
        }
        let len = get_varint(self.data, &mut self.position);
        let field = self.data.get(self.position..self.position + len)?;
        self.position += len;
        let len = get_varint(self.data, &mut self.position);
        let value = self.data.get(self.position..self.position + len)?;
        self.position += len;
        Some((field, value))
    }
}

/// Appends `value` as LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 value at `position`; the blob was written by us, so it is well formed, but a
/// short read still returns 0 rather than panicking.
pub fn get_varint(data: &[u8], position: &mut usize) -> usize {
    let mut value = 0usize;
    let mut shift = 0;
    while let Some(&byte) = data.get(*position) {
        *position += 1;
        value |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    value
}

/// Encoded length of `value` as LEB128.
pub fn varint_len(mut value: usize) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}
