//! A general RESP2/RESP3 frame decoder. The server parses requests with the faster
//! [`super::request`] parser; this one reads replies (tests, tools) and backs the round-trip
//! property test and the fuzz target. It never panics and never allocates more than the input
//! justifies.

use std::borrow::Cow;

use bytes::Bytes;

use super::frame::Frame;

/// Deepest nesting of aggregates accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a buffer is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first byte of a frame is not a known type.
    #[error("unknown frame type byte {0:#04x}")]
    UnknownType(u8),
    /// A length or integer line is not a valid number.
    #[error("invalid number")]
    InvalidNumber,
    /// A bulk payload is not followed by CRLF.
    #[error("missing CRLF after bulk payload")]
    MissingCrlf,
    /// A simple line is not valid UTF-8.
    #[error("invalid UTF-8 in a simple line")]
    InvalidUtf8,
    /// Aggregates nest deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A verbatim string lacks its `fmt:` prefix.
    #[error("invalid verbatim string")]
    InvalidVerbatim,
}

/// Decodes one frame from the start of `input`: `Ok(None)` when more bytes are needed,
/// otherwise the frame and the number of bytes it used.
pub fn decode(input: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    let mut position = 0;
    match decode_at(input, &mut position, 0)? {
        Some(frame) => Ok(Some((frame, position))),
        None => Ok(None),
    }
}

fn read_line<'a>(input: &'a [u8], position: &mut usize) -> Option<&'a [u8]> {
    let rest = input.get(*position..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    *position += end + 2;
    Some(&rest[..end])
}

fn parse_i64(line: &[u8]) -> Result<i64, DecodeError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or(DecodeError::InvalidNumber)
}

fn read_blob(input: &[u8], position: &mut usize, len: usize) -> Result<Option<Bytes>, DecodeError> {
    let Some(end) = position.checked_add(len) else {
        return Err(DecodeError::InvalidNumber);
    };
    if input.len() < end.saturating_add(2) {
        return Ok(None);
    }
    if &input[end..end + 2] != b"\r\n" {
        return Err(DecodeError::MissingCrlf);
    }
    let data = Bytes::copy_from_slice(&input[*position..end]);
    *position = end + 2;
    Ok(Some(data))
}

fn decode_at(
    input: &[u8],
    position: &mut usize,
    depth: usize,
) -> Result<Option<Frame>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let Some(&tag) = input.get(*position) else {
        return Ok(None);
    };
    let start = *position;
    *position += 1;
    let Some(line) = read_line(input, position) else {
        *position = start;
        return Ok(None);
    };
    let text = || {
        std::str::from_utf8(line)
            .map(|text| Cow::Owned(text.to_string()))
            .map_err(|_| DecodeError::InvalidUtf8)
    };
    let frame = match tag {
        b'+' => Frame::Simple(text()?),
        b'-' => Frame::Error(text()?),
        b':' => Frame::Integer(parse_i64(line)?),
        b'_' => {
            if !line.is_empty() {
                return Err(DecodeError::InvalidNumber);
            }
            Frame::Null
        }
        b'#' => match line {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(DecodeError::InvalidNumber),
        },
        b',' => {
            let text = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidNumber)?;
            let value = match text {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                _ => text
                    .parse::<f64>()
                    .map_err(|_| DecodeError::InvalidNumber)?,
            };
            Frame::Double(value)
        }
        b'$' | b'=' | b'!' => {
            let len = parse_i64(line)?;
            if len == -1 && tag == b'$' {
                return Ok(Some(Frame::Null));
            }
            let len = usize::try_from(len).map_err(|_| DecodeError::InvalidNumber)?;
            let Some(data) = read_blob(input, position, len)? else {
                *position = start;
                return Ok(None);
            };
            match tag {
                b'$' => Frame::Bulk(data),
                b'!' => Frame::Error(Cow::Owned(String::from_utf8_lossy(&data).into_owned())),
                _ => {
                    if data.len() < 4 || data[3] != b':' {
                        return Err(DecodeError::InvalidVerbatim);
                    }
                    Frame::Verbatim(data.slice(4..))
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let len = parse_i64(line)?;
            if len == -1 && tag == b'*' {
                return Ok(Some(Frame::NullArray));
            }
            let len = usize::try_from(len).map_err(|_| DecodeError::InvalidNumber)?;
            let items = if tag == b'%' {
                len.saturating_mul(2)
            } else {
                len
            };
            // Every element takes at least three bytes, so a huge count in a short input is
            // either incomplete or a lie; never reserve more than the input can hold.
            let mut elements = Vec::with_capacity(items.min(input.len() / 3 + 1));
            for _ in 0..items {
                match decode_at(input, position, depth + 1)? {
                    Some(frame) => elements.push(frame),
                    None => {
                        *position = start;
                        return Ok(None);
                    }
                }
            }
            if tag == b'%' {
                let mut pairs = Vec::with_capacity(len);
                let mut iter = elements.into_iter();
                while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
                    pairs.push((key, value));
                }
                Frame::Map(pairs)
            } else if tag == b'~' {
                Frame::Set(elements)
            } else if tag == b'>' {
                Frame::Push(elements)
            } else {
                Frame::Array(elements)
            }
        }
        b'(' => {
            if line.is_empty()
                || !line
                    .iter()
                    .enumerate()
                    .all(|(index, byte)| byte.is_ascii_digit() || (index == 0 && *byte == b'-'))
            {
                return Err(DecodeError::InvalidNumber);
            }
            Frame::BigNumber(Bytes::copy_from_slice(line))
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_and_partial() {
        let input = b"*2\r\n$3\r\nfoo\r\n%1\r\n+a\r\n:1\r\n";
        let (frame, used) = decode(input).unwrap().unwrap();
        assert_eq!(used, input.len());
        assert_eq!(
            frame,
            Frame::Array(vec![
                Frame::bulk(b"foo"),
                Frame::Map(vec![(Frame::Simple("a".into()), Frame::Integer(1))])
            ])
        );
        for cut in 0..input.len() {
            assert_eq!(decode(&input[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn rejects_garbage_and_depth() {
        assert_eq!(decode(b"?x\r\n"), Err(DecodeError::UnknownType(b'?')));
        assert_eq!(decode(b"$3\r\nfooX\r\n"), Err(DecodeError::MissingCrlf));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert_eq!(decode(deep.as_bytes()), Err(DecodeError::TooDeep));
    }
}
