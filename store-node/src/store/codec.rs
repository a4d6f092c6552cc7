//! The byte encoding of records, shared by the peer protocol and the write-ahead log and
//! snapshots (which store peer frames): a record is `key | flags u8 | [expire_at u64] |
//! [stamp] | payload` (the state's header and compact payload, `super::state::encode`), byte
//! strings are `u32 length | bytes`, lists `u32 count | items`, integers big-endian. Records
//! of the previous format (`key | stamp | live value or tombstone`, body format 1) still decode,
//! as whole values that replace older states ([`Record::replaces`]). Decoding is
//! bounds-checked and never panics, whatever the bytes; forged list counts are checked against
//! the bytes left before anything is allocated.

use bytes::{Buf, BufMut, Bytes};

use super::record::{Record, RecordView};
use super::stamp::Stamp;
pub use super::state::DecodeError;
use super::state::{decode, Header};
use super::value::Value;

/// Encoded size of the smallest possible record (empty key, flags, empty payload), used to
/// bound forged list counts.
pub const MIN_RECORD_LEN: usize = 4 + 1 + 4;

/// Encoded size of the smallest record of the previous format.
const MIN_LEGACY_RECORD_LEN: usize = 4 + 12 + 1 + 1 + 1 + 4;

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

/// Writes one record: key, flags, expiry, stamp, payload.
pub fn put_record(out: &mut impl BufMut, record: &RecordView<'_>) {
    put_bytes(out, record.key);
    out.put_u8(record.header.flags());
    if let Some(at) = record.header.expire_at {
        out.put_u64(at);
    }
    if let Some(stamp) = record.header.stamp {
        put_stamp(out, stamp);
    }
    put_bytes(out, record.payload);
}

/// A bounds-checked reader over a message body. With `owner` (the body as [`Bytes`]), keys
/// and values are slices of it instead of copies.
pub struct Reader<'a> {
    data: &'a [u8],
    owner: Option<&'a Bytes>,
    legacy: bool,
}

impl<'a> Reader<'a> {
    /// A reader copying keys and values out of `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            owner: None,
            legacy: false,
        }
    }

    /// A reader whose keys and values are slices of `body` (no copy).
    pub fn shared(body: &'a Bytes) -> Reader<'a> {
        Reader {
            data: body,
            owner: Some(body),
            legacy: false,
        }
    }

    /// Reads records of the previous format (body format 1) from here on.
    pub fn set_legacy(&mut self, legacy: bool) {
        self.legacy = legacy;
    }

    /// Whether records of the previous format are read.
    pub fn is_legacy(&self) -> bool {
        self.legacy
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

    /// Reads one record (see [`put_record`]); the state is checked whole.
    pub fn record(&mut self) -> Result<Record, DecodeError> {
        if self.legacy {
            return self.legacy_record();
        }
        let key = self.bytes()?;
        let flags = self.u8()?;
        let expire_at = if Header::flags_expiry(flags) {
            Some(self.u64()?)
        } else {
            None
        };
        let stamp = if Header::flags_stamp(flags) {
            Some(self.stamp()?)
        } else {
            None
        };
        let header = Header::from_flags(flags, expire_at, stamp)?;
        let payload = self.bytes()?;
        decode(&header, &payload)?;
        Ok(Record {
            key,
            header,
            payload,
            replaces: false,
        })
    }

    /// Reads one record of the previous format: a whole value (a string or a hash) with its
    /// expiry, or a tombstone, under one stamp.
    fn legacy_record(&mut self) -> Result<Record, DecodeError> {
        let key = self.bytes()?;
        let stamp = self.stamp()?;
        let mut record = match self.u8()? {
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
                Record::live(key, stamp, value, expire_at)
            }
            1 => Record::tombstone(key, stamp, self.u64()?),
            _ => return Err(DecodeError::Invalid("record state")),
        };
        record.replaces = true;
        Ok(record)
    }

    /// Reads a list of records.
    pub fn records(&mut self) -> Result<Vec<Record>, DecodeError> {
        let smallest = if self.legacy {
            MIN_LEGACY_RECORD_LEN
        } else {
            MIN_RECORD_LEN
        };
        let count = self.count(smallest)?;
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            records.push(self.record()?);
        }
        Ok(records)
    }
}
