//! Reply frames and their encoding. A command returns a [`Frame`]; the connection encodes it
//! in the protocol version the client chose with `HELLO` (RESP2 by default).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2: maps become flat arrays, null is `$-1`, booleans are integers.
    Resp2,
    /// RESP3 (`HELLO 3`).
    Resp3,
}

/// A RESP value. RESP3-only types are downgraded when encoded for RESP2 clients.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`
    Simple(Cow<'static, str>),
    /// `-ERR text`; the text includes the error code (`ERR`, `WRONGTYPE`, ...).
    Error(Cow<'static, str>),
    /// `:n`
    Integer(i64),
    /// `$len` binary-safe string.
    Bulk(Bytes),
    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// A null array: `*-1` in RESP2, `_` in RESP3 (EXEC after a failed transaction).
    NullArray,
    /// `*n` array.
    Array(Vec<Frame>),
    /// `%n` map; a flat array of 2n elements in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// `~n` set; an array in RESP2.
    Set(Vec<Frame>),
    /// `,f` double; a bulk string in RESP2.
    Double(f64),
    /// `#t`/`#f`; the integer 1/0 in RESP2.
    Boolean(bool),
    /// `=len` verbatim string with a three-letter format (`txt`); a bulk string in RESP2.
    Verbatim(Bytes),
    /// `>n` out-of-band push (pub/sub messages); an array in RESP2, where a subscribed
    /// connection reads nothing else.
    Push(Vec<Frame>),
    /// Several replies in a row, not one aggregate: `SUBSCRIBE a b` answers one confirmation
    /// per channel.
    Sequence(Vec<Frame>),
    /// `(digits` big number (a Lua script's `{big_number=...}`); a bulk string in RESP2.
    BigNumber(Bytes),
}

impl Frame {
    /// `+OK`
    pub const fn ok() -> Frame {
        Frame::Simple(Cow::Borrowed("OK"))
    }

    /// An error reply from static text.
    pub const fn error(text: &'static str) -> Frame {
        Frame::Error(Cow::Borrowed(text))
    }

    /// A bulk string copied from a slice.
    pub fn bulk(data: &[u8]) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(data))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Appends the pushes this frame holds (itself, or the items of a sequence) to `out`:
    /// what goes out of a reply that `CLIENT REPLY OFF` stops.
    pub fn encode_pushes(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Frame::Push(_) => self.encode(protocol, out),
            Frame::Sequence(frames) => {
                for frame in frames {
                    frame.encode_pushes(protocol, out);
                }
            }
            _ => {}
        }
    }

    /// Appends the encoding of this frame to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match self {
            Frame::Simple(text) => put_line(out, b'+', text),
            Frame::Error(text) => put_line(out, b'-', text),
            Frame::Integer(value) => {
                out.put_u8(b':');
                put_decimal(out, *value);
                out.put_slice(b"\r\n");
            }
            Frame::Bulk(data) => put_bulk(out, b'$', data),
            Frame::Null => match protocol {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Frame::NullArray => match protocol {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Frame::Array(items) => {
                put_header(out, b'*', items.len());
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Frame::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => put_header(out, b'*', pairs.len() * 2),
                    Protocol::Resp3 => put_header(out, b'%', pairs.len()),
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Frame::Set(items) | Frame::Push(items) => {
                let tag = match (self, protocol) {
                    (_, Protocol::Resp2) => b'*',
                    (Frame::Push(_), Protocol::Resp3) => b'>',
                    _ => b'~',
                };
                put_header(out, tag, items.len());
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Frame::Double(value) => {
                let text = format_double(*value);
                match protocol {
                    Protocol::Resp2 => put_bulk(out, b'$', text.as_bytes()),
                    Protocol::Resp3 => {
                        out.put_u8(b',');
                        out.put_slice(text.as_bytes());
                        out.put_slice(b"\r\n");
                    }
                }
            }
            Frame::Boolean(value) => match protocol {
                Protocol::Resp2 => out.put_slice(if *value { b":1\r\n" } else { b":0\r\n" }),
                Protocol::Resp3 => out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
            },
            Frame::Sequence(frames) => {
                for frame in frames {
                    frame.encode(protocol, out);
                }
            }
            Frame::BigNumber(digits) => match protocol {
                Protocol::Resp2 => put_bulk(out, b'$', digits),
                Protocol::Resp3 => {
                    out.put_u8(b'(');
                    out.put_slice(digits);
                    out.put_slice(b"\r\n");
                }
            },
            Frame::Verbatim(data) => match protocol {
                Protocol::Resp2 => put_bulk(out, b'$', data),
                Protocol::Resp3 => {
                    put_header(out, b'=', data.len() + 4);
                    out.put_slice(b"txt:");
                    out.put_slice(data);
                    out.put_slice(b"\r\n");
                }
            },
        }
    }

    /// Encodes into a fresh buffer (tests and tools).
    pub fn to_bytes(&self, protocol: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(protocol, &mut out);
        out.freeze()
    }
}

/// Formats a double the way RESP3 spells special values.
/// The text of a double as Redis 7.2 writes it in replies (`d2string`): `inf`, `-inf`, `nan`,
/// integers in full, other values in their shortest round-trip digits, switching to
/// scientific notation far from 1 (`1e+21`, `1e-7`).
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Redis 7.2's `d2string`: integers within `long long` as integers, everything else as
    // the shortest digits that read back the same (fpconv), laid out by fpconv's rules.
    if value.fract() == 0.0 && value.abs() < 9.2e18 {
        return format!("{}", value as i64);
    }
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let ndigits = digits.len() as i32;
    // The value is digits × 10^k.
    let k = exponent - (ndigits - 1);
    let sign = if value < 0.0 { "-" } else { "" };
    let magnitude = (k + ndigits - 1).abs();
    if k >= 0 && magnitude < ndigits + 7 {
        return format!("{sign}{digits}{}", "0".repeat(k as usize));
    }
    if k < 0 && (k > -7 || magnitude < 4) {
        let offset = ndigits + k;
        return if offset <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-offset) as usize))
        } else {
            let (whole, fraction) = digits.split_at(offset as usize);
            format!("{sign}{whole}.{fraction}")
        };
    }
    let kept = ndigits.min(if value < 0.0 { 17 } else { 18 }) as usize;
    let (first, rest) = digits[..kept].split_at(1);
    let point = if rest.is_empty() {
        String::new()
    } else {
        format!(".{rest}")
    };
    let exponent_sign = if k + ndigits - 1 < 0 { '-' } else { '+' };
    format!("{sign}{first}{point}e{exponent_sign}{magnitude}")
}

/// Writes a simple line; CR and LF inside would end the line early, so they become spaces (as
/// Redis does for error texts).
fn put_line(out: &mut BytesMut, tag: u8, text: &str) {
    out.put_u8(tag);
    if text.bytes().any(|byte| byte == b'\r' || byte == b'\n') {
        out.extend(text.bytes().map(|byte| {
            if byte == b'\r' || byte == b'\n' {
                b' '
            } else {
                byte
            }
        }));
    } else {
        out.put_slice(text.as_bytes());
    }
    out.put_slice(b"\r\n");
}

fn put_decimal(out: &mut BytesMut, value: i64) {
    let mut buffer = itoa_buffer();
    out.put_slice(format_i64(&mut buffer, value));
}

fn put_header(out: &mut BytesMut, tag: u8, len: usize) {
    out.put_u8(tag);
    let mut buffer = itoa_buffer();
    out.put_slice(format_i64(&mut buffer, len as i64));
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, tag: u8, data: &[u8]) {
    out.reserve(data.len() + 16);
    put_header(out, tag, data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn itoa_buffer() -> [u8; 20] {
    [0u8; 20]
}

/// Formats an integer into a stack buffer without allocating (the hot path writes one per
/// bulk reply).
pub(crate) fn format_i64(buffer: &mut [u8; 20], value: i64) -> &[u8] {
    let negative = value < 0;
    let mut magnitude = value.unsigned_abs();
    let mut position = buffer.len();
    loop {
        position -= 1;
        buffer[position] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        // i64::MIN has 19 digits, so there is always room for the sign.
        position -= 1;
        buffer[position] = b'-';
    }
    &buffer[position..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: Frame, protocol: Protocol) -> Vec<u8> {
        frame.to_bytes(protocol).to_vec()
    }

    #[test]
    fn encodes_scalars() {
        assert_eq!(encoded(Frame::ok(), Protocol::Resp2), b"+OK\r\n");
        assert_eq!(
            encoded(Frame::error("ERR x"), Protocol::Resp2),
            b"-ERR x\r\n"
        );
        assert_eq!(encoded(Frame::Integer(-42), Protocol::Resp2), b":-42\r\n");
        assert_eq!(
            encoded(Frame::Integer(i64::MIN), Protocol::Resp2),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(
            encoded(Frame::bulk(b"hi"), Protocol::Resp2),
            b"$2\r\nhi\r\n"
        );
        assert_eq!(encoded(Frame::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(encoded(Frame::Null, Protocol::Resp3), b"_\r\n");
        assert_eq!(encoded(Frame::NullArray, Protocol::Resp2), b"*-1\r\n");
        assert_eq!(encoded(Frame::Boolean(true), Protocol::Resp2), b":1\r\n");
        assert_eq!(encoded(Frame::Boolean(false), Protocol::Resp3), b"#f\r\n");
        assert_eq!(encoded(Frame::Double(1.5), Protocol::Resp3), b",1.5\r\n");
        assert_eq!(
            encoded(Frame::Double(1.5), Protocol::Resp2),
            b"$3\r\n1.5\r\n"
        );
    }

    #[test]
    fn maps_downgrade_to_flat_arrays_in_resp2() {
        let map = Frame::Map(vec![(Frame::bulk(b"a"), Frame::Integer(1))]);
        assert_eq!(
            encoded(map.clone(), Protocol::Resp2),
            b"*2\r\n$1\r\na\r\n:1\r\n"
        );
        assert_eq!(encoded(map, Protocol::Resp3), b"%1\r\n$1\r\na\r\n:1\r\n");
        let verbatim = Frame::Verbatim(Bytes::from_static(b"ab"));
        assert_eq!(
            encoded(verbatim.clone(), Protocol::Resp3),
            b"=6\r\ntxt:ab\r\n"
        );
        assert_eq!(encoded(verbatim, Protocol::Resp2), b"$2\r\nab\r\n");
    }

    #[test]
    fn pushes_are_arrays_in_resp2_and_big_numbers_bulk_strings() {
        let push = Frame::Push(vec![Frame::bulk(b"message"), Frame::Integer(1)]);
        assert_eq!(
            encoded(push.clone(), Protocol::Resp3),
            b">2\r\n$7\r\nmessage\r\n:1\r\n"
        );
        assert_eq!(
            encoded(push, Protocol::Resp2),
            b"*2\r\n$7\r\nmessage\r\n:1\r\n"
        );
        let big = Frame::BigNumber(Bytes::from_static(b"123"));
        assert_eq!(encoded(big.clone(), Protocol::Resp3), b"(123\r\n");
        assert_eq!(encoded(big, Protocol::Resp2), b"$3\r\n123\r\n");
    }
}

#[cfg(test)]
mod double_tests {
    use super::format_double;

    #[test]
    fn doubles_print_as_redis_7_2_does() {
        for (value, text) in [
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (1e-7, "1e-7"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(format_double(value), text, "{value}");
        }
    }
}
