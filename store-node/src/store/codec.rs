//! The byte encoding of records, shared by the peer protocol and the write-ahead log and
//! snapshots (which store peer frames): a record is `key | stamp | state`, byte strings are
//! `u32 length | bytes`, lists `u32 count | items`, integers big-endian. Decoding is
//! bounds-checked and never panics, whatever the bytes; forged list counts are checked against
//! the bytes left before anything is allocated.

use bytes::{Buf, BufMut, Bytes};

use super::record::{Record, RecordState, RecordView, StateView};
use super::stamp::Stamp;
use super::value::{Value, ValueView};

/// What is wrong with bytes that should hold a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ended before a field.
    #[error("truncated message body")]
    Truncated,
    /// A field has an invalid value.
    #[error("invalid field {0}")]
    Invalid(&'static str),
}

/// Encoded size of the smallest possible record (empty key, stamp, state, no expiry, kind,
/// empty string), used to bound forged list counts.
pub const MIN_RECORD_LEN: usize = 4 + 12 + 1 + 1 + 1 + 4;

/// Writes a byte string as `u32 length | bytes`.
pub fn put_bytes(out: &mut impl BufMut, data: &[u8]) {
    out.put_u32(data.len() as u32);
    out.put_slice(data);
}

/// Writes a version stamp (`u64 hlc | u32 origin`).
pub fn put_stamp(out: &mut impl BufMut, stamp: Stamp) {
    out.put_u64(stamp.hlc);
    out.put_u32(stamp.origin);
}

/// Writes one record: key, stamp, then the live value with its expiry or the tombstone.
pub fn put_record(out: &mut impl BufMut, record: &RecordView<'_>) {
    put_bytes(out, record.key);
    put_stamp(out, record.stamp);
    match &record.state {
        StateView::Live { value, expire_at } => {
            out.put_u8(0);
            match expire_at {
                Some(at) => {
                    out.put_u8(1);
                    out.put_u64(*at);
                }
                None => out.put_u8(0),
            }
            match value {
                ValueView::String(data) => {
                    out.put_u8(0);
                    put_bytes(out, data);
                }
                hash => {
                    out.put_u8(1);
                    let mut count = 0u32;
                    hash.for_each_pair(|_, _| count += 1);
                    out.put_u32(count);
                    hash.for_each_pair(|field, value| {
                        put_bytes(out, field);
                        put_bytes(out, value);
                    });
                }
            }
        }
        StateView::Tombstone { deleted_at_ms } => {
            out.put_u8(1);
            out.put_u64(*deleted_at_ms);
        }
    }
}

/// A bounds-checked reader over a message body. With `owner` (the body as [`Bytes`]), keys
/// and values are slices of it instead of copies.
pub struct Reader<'a> {
    data: &'a [u8],
    owner: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    /// A reader copying keys and values out of `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, owner: None }
    }

    /// A reader whose keys and values are slices of `body` (no copy).
    pub fn shared(body: &'a Bytes) -> Reader<'a> {
        Reader {
            data: body,
            owner: Some(body),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.remaining()
    }

    fn need(&self, len: usize) -> Result<(), DecodeError> {
        if self.data.remaining() < len {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }

    /// Reads a big-endian `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.data.get_u8())
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.data.get_u16())
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.data.get_u32())
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.data.get_u64())
    }

    /// Reads a boolean byte (0 or 1).
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("boolean")),
        }
    }

    /// Reads a byte string (`u32 length | bytes`).
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        self.need(len)?;
        let out = match self.owner {
            Some(owner) => owner.slice_ref(&self.data[..len]),
            None => Bytes::copy_from_slice(&self.data[..len]),
        };
        self.data.advance(len);
        Ok(out)
    }

    /// Reads a UTF-8 string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Invalid("utf-8 string"))
    }

    /// A list count, checked against the bytes left (each item takes at least `min_item`
    /// bytes), so a forged count cannot make us allocate gigabytes.
    /// Reads a `count`.
    pub fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item) > self.data.remaining() {
            return Err(DecodeError::Truncated);
        }
        Ok(count)
    }

    /// Reads a version stamp.
    pub fn stamp(&mut self) -> Result<Stamp, DecodeError> {
        Ok(Stamp {
            hlc: self.u64()?,
            origin: self.u32()?,
        })
    }

    /// Reads one record (see [`put_record`]).
    pub fn record(&mut self) -> Result<Record, DecodeError> {
        let key = self.bytes()?;
        let stamp = self.stamp()?;
        let state = match self.u8()? {
            0 => {
                let expire_at = if self.bool()? {
                    Some(self.u64()?)
                } else {
                    None
                };
                let value = match self.u8()? {
                    0 => Value::String(self.bytes()?),
                    1 => {
                        let count = self.count(8)?;
                        let mut fields = Vec::with_capacity(count);
                        for _ in 0..count {
                            fields.push((self.bytes()?, self.bytes()?));
                        }
                        Value::Hash(fields)
                    }
                    _ => return Err(DecodeError::Invalid("value kind")),
                };
                RecordState::Live { value, expire_at }
            }
            1 => RecordState::Tombstone {
                deleted_at_ms: self.u64()?,
            },
            _ => return Err(DecodeError::Invalid("record state")),
        };
        Ok(Record { key, stamp, state })
    }

    /// Reads a list of records.
    pub fn records(&mut self) -> Result<Vec<Record>, DecodeError> {
        // The smallest record: empty key, stamp, state, no expiry, kind, empty string.
        let count = self.count(MIN_RECORD_LEN)?;
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            records.push(self.record()?);
        }
        Ok(records)
    }
}
