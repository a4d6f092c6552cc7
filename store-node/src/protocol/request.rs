//! The request parser: RESP multibulk requests (`*N` of `$len` bulk strings) and inline
//! commands (`PING\r\n`), with Redis's limits and its exact `Protocol error: ...` texts. Arguments
//! are zero-copy slices of the read buffer. A request whose declared argument bytes exceed the
//! room the caller gives ([`RequestParser::parse_within`]) is refused: its bytes are dropped as
//! they arrive, never buffered, and the caller answers it (with `OOM`).

use bytes::{Buf, Bytes, BytesMut};

/// Largest single buffer reservation made for a partially received argument.
const MAX_RESERVE_STEP: usize = 4 * 1024 * 1024;

/// Size limits applied while parsing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string argument (Redis `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Most arguments in one request (Redis allows 1024*1024).
    pub max_args: usize,
    /// Longest inline command line, and longest `*`/`$` header line (Redis: 64 KiB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// A malformed request. The connection answers `-ERR Protocol error: <this>` and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An inline line longer than the limit.
    #[error("too big inline request")]
    InlineTooBig,
    /// A `*` header line longer than the limit.
    #[error("too big mbulk count string")]
    MultibulkCountTooBig,
    /// A `$` header line longer than the limit.
    #[error("too big bulk count string")]
    BulkCountTooBig,
    /// The `*` count is not a number or above the argument limit.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// The `$` length is not a number or above the bulk limit.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// An element of a multibulk request is not a bulk string.
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// An inline command with an unterminated quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// What [`RequestParser::parse_within`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request, in `args`.
    Request,
    /// More bytes are needed.
    Incomplete,
    /// A request declared more argument bytes than the room given; all of its bytes were
    /// consumed and dropped.
    Refused,
}

/// The rest of a refused request, dropped as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Discard {
    /// Bytes of the current argument (and its CRLF) still to drop.
    bulk_left: usize,
    /// Arguments after the current one.
    args_left: usize,
}

/// Parses requests out of a connection's read buffer.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    spans: Vec<(usize, usize)>,
    discard: Option<Discard>,
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let newline = rest.iter().position(|&byte| byte == b'\n')?;
    // Redis looks for '\r' and requires the '\n' after it; a bare '\n' inside a header makes
    // the number invalid below, which gives the same error text.
    Some(from + newline)
}

fn parse_len(line: &[u8]) -> Option<i64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() || line.len() > 20 {
        return None;
    }
    let (negative, digits) = match line[0] {
        b'-' => (true, &line[1..]),
        _ => (false, line),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(byte - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            spans: Vec::new(),
            discard: None,
        }
    }

    /// Parses the next request from `buf` into `args` (cleared first). Returns `Ok(true)` when a
    /// request was consumed, `Ok(false)` when more bytes are needed. Empty requests (`*0`, blank
    /// inline lines) are consumed silently, as Redis does.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        Ok(self.parse_within(buf, args, u64::MAX)? == Parsed::Request)
    }

    /// Like [`RequestParser::parse`], but a multibulk request whose argument bytes, as their
    /// headers declare them, add up to more than `room` is [`Parsed::Refused`] as soon as the
    /// header that crosses it arrives: what was buffered of it is dropped, and the rest is
    /// dropped as it arrives (a refused request may span several calls, which return
    /// [`Parsed::Incomplete`] meanwhile). Inline requests are bounded by the line limit.
    pub fn parse_within(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
        room: u64,
    ) -> Result<Parsed, ProtocolError> {
        args.clear();
        loop {
            if self.discard.is_some() {
                return self.continue_discard(buf);
            }
            if buf.is_empty() {
                return Ok(Parsed::Incomplete);
            }
            let consumed = if buf[0] == b'*' {
                self.parse_multibulk(buf, args, room)?
            } else {
                self.parse_inline(buf, args)?
            };
            match consumed {
                None if self.discard.is_some() => continue,
                None => return Ok(Parsed::Incomplete),
                Some(()) if args.is_empty() => continue,
                Some(()) => return Ok(Parsed::Request),
            }
        }
    }

    /// Drops the rest of a refused request: what remains of the current argument, then each
    /// further argument's header and bytes.
    fn continue_discard(&mut self, buf: &mut BytesMut) -> Result<Parsed, ProtocolError> {
        while let Some(discard) = self.discard.as_mut() {
            let drop = discard.bulk_left.min(buf.len());
            buf.advance(drop);
            discard.bulk_left -= drop;
            if discard.bulk_left > 0 {
                return Ok(Parsed::Incomplete);
            }
            if discard.args_left == 0 {
                self.discard = None;
                return Ok(Parsed::Refused);
            }
            let Some(&tag) = buf.first() else {
                return Ok(Parsed::Incomplete);
            };
            if tag != b'$' {
                self.discard = None;
                return Err(ProtocolError::ExpectedBulk(tag as char));
            }
            let Some(newline) = find_crlf(buf, 1) else {
                if buf.len() > self.limits.max_inline_len {
                    self.discard = None;
                    return Err(ProtocolError::BulkCountTooBig);
                }
                return Ok(Parsed::Incomplete);
            };
            let len = parse_len(&buf[1..newline])
                .filter(|&len| len >= 0 && len as u64 <= self.limits.max_bulk_len as u64);
            let Some(len) = len else {
                self.discard = None;
                return Err(ProtocolError::InvalidBulkLength);
            };
            buf.advance(newline + 1);
            discard.bulk_left = len as usize + 2;
            discard.args_left -= 1;
        }
        Ok(Parsed::Refused)
    }

    fn parse_multibulk(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
        room: u64,
    ) -> Result<Option<()>, ProtocolError> {
        let Some(newline) = find_crlf(buf, 1) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::MultibulkCountTooBig);
            }
            return Ok(None);
        };
        let count = parse_len(&buf[1..newline]).ok_or(ProtocolError::InvalidMultibulkLength)?;
        if count > self.limits.max_args as i64 {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if count <= 0 {
            buf.advance(newline + 1);
            return Ok(Some(()));
        }
        let count = count as usize;
        self.spans.clear();
        let mut position = newline + 1;
        let mut declared: u64 = 0;
        for index in 0..count {
            let Some(&tag) = buf.get(position) else {
                return Ok(None);
            };
            if tag != b'$' {
                return Err(ProtocolError::ExpectedBulk(tag as char));
            }
            let Some(newline) = find_crlf(buf, position + 1) else {
                if buf.len() - position > self.limits.max_inline_len {
                    return Err(ProtocolError::BulkCountTooBig);
                }
                return Ok(None);
            };
            let len =
                parse_len(&buf[position + 1..newline]).ok_or(ProtocolError::InvalidBulkLength)?;
            if len < 0 || len as u64 > self.limits.max_bulk_len as u64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            let start = newline + 1;
            let end = start + len as usize;
            declared += len as u64;
            if declared > room {
                // Refused before its bytes are buffered: drop what arrived of it, and the rest
                // as it comes.
                let have = buf.len().min(end + 2);
                buf.advance(have);
                self.discard = Some(Discard {
                    bulk_left: end + 2 - have,
                    args_left: count - index - 1,
                });
                return Ok(None);
            }
            if buf.len() < end + 2 {
                // Grow towards the whole argument in steps of at most 4 MiB: a header alone
                // must not make the server allocate 512 MiB.
                buf.reserve((end + 2 - buf.len()).min(MAX_RESERVE_STEP));
                return Ok(None);
            }
            self.spans.push((start, end));
            // Redis skips the two bytes after the payload without checking them.
            position = end + 2;
        }
        let frame = buf.split_to(position).freeze();
        args.extend(
            self.spans
                .iter()
                .map(|&(start, end)| frame.slice(start..end)),
        );
        Ok(Some(()))
    }

    fn parse_inline(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<Option<()>, ProtocolError> {
        let Some(newline) = find_crlf(buf, 0) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::InlineTooBig);
            }
            return Ok(None);
        };
        if newline > self.limits.max_inline_len {
            return Err(ProtocolError::InlineTooBig);
        }
        let line = buf.split_to(newline + 1);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_inline(line, args)?;
        if args.len() > self.limits.max_args {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        Ok(Some(()))
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline line like Redis's `sdssplitargs`: whitespace separated, with "double"
/// quotes (C escapes, `\xHH`) and 'single' quotes (only `\'`).
pub fn split_inline(line: &[u8], args: &mut Vec<Bytes>) -> Result<(), ProtocolError> {
    let mut position = 0;
    loop {
        while position < line.len() && line[position].is_ascii_whitespace() {
            position += 1;
        }
        if position >= line.len() {
            return Ok(());
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let Some(&byte) = line.get(position) else {
                if in_double || in_single {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                break;
            };
            if in_double {
                if byte == b'\\' && position + 3 < line.len() && line[position + 1] == b'x' {
                    if let (Some(high), Some(low)) =
                        (hex_value(line[position + 2]), hex_value(line[position + 3]))
                    {
                        current.push(high * 16 + low);
                        position += 4;
                        continue;
                    }
                }
                if byte == b'\\' && position + 1 < line.len() {
                    position += 1;
                    current.push(match line[position] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if byte == b'"' {
                    // A closing quote must be followed by a space or the end.
                    if position + 1 < line.len() && !line[position + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    position += 1;
                    break;
                } else {
                    current.push(byte);
                }
            } else if in_single {
                if byte == b'\\' && position + 1 < line.len() && line[position + 1] == b'\'' {
                    position += 1;
                    current.push(b'\'');
                } else if byte == b'\'' {
                    if position + 1 < line.len() && !line[position + 1].is_ascii_whitespace() {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    position += 1;
                    break;
                } else {
                    current.push(byte);
                }
            } else if byte.is_ascii_whitespace() {
                break;
            } else if byte == b'"' {
                in_double = true;
            } else if byte == b'\'' {
                in_single = true;
            } else {
                current.push(byte);
            }
            position += 1;
        }
        args.push(Bytes::from(current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(input);
        let mut args = Vec::new();
        let mut requests = Vec::new();
        while parser.parse(&mut buf, &mut args)? {
            requests.push(args.iter().map(|arg| arg.to_vec()).collect());
        }
        Ok(requests)
    }

    #[test]
    fn parses_pipelined_multibulk_and_inline() {
        let requests =
            parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n\r\nSET a \"b c\"\r\n")
                .unwrap();
        assert_eq!(
            requests,
            vec![
                vec![b"GET".to_vec(), b"k".to_vec()],
                vec![b"PING".to_vec()],
                vec![b"SET".to_vec(), b"a".to_vec(), b"b c".to_vec()],
            ]
        );
    }

    #[test]
    fn waits_for_incomplete_requests() {
        let full = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse_all(&full[..cut]).unwrap(),
                Vec::<Vec<Vec<u8>>>::new(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn reports_redis_protocol_errors() {
        assert_eq!(
            parse_all(b"*x\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*2000000\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n+foo\r\n"),
            Err(ProtocolError::ExpectedBulk('+'))
        );
        assert_eq!(
            parse_all(b"*1\r\n$-5\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"*1\r\n$600000000\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            parse_all(b"SET \"a\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_all(&vec![b'a'; 70 * 1024]),
            Err(ProtocolError::InlineTooBig)
        );
        assert_eq!(
            ProtocolError::ExpectedBulk('+').to_string(),
            "expected '$', got '+'"
        );
    }

    #[test]
    fn a_huge_bulk_header_does_not_allocate_the_whole_argument() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*1\r\n$536870000\r\nabc"[..]);
        let mut args = Vec::new();
        assert_eq!(parser.parse(&mut buf, &mut args), Ok(false));
        assert!(
            buf.capacity() <= 2 * MAX_RESERVE_STEP,
            "capacity {}",
            buf.capacity()
        );
    }

    /// A request declaring more bytes than the room is refused as soon as the header that
    /// crosses it arrives; its bytes are dropped as they come, never buffered, and the requests
    /// after it parse as usual.
    #[test]
    fn a_request_over_the_room_is_refused_and_its_bytes_dropped_as_they_arrive() {
        let mut parser = RequestParser::default();
        let mut args = Vec::new();
        let value = vec![b'v'; 100_000];
        let mut request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
        // Fed in pieces of 4 KiB: the buffer never holds more than a piece.
        let mut buf = BytesMut::new();
        let mut replies = Vec::new();
        for piece in request.chunks(4096) {
            buf.extend_from_slice(piece);
            loop {
                match parser.parse_within(&mut buf, &mut args, 1000) {
                    Ok(Parsed::Incomplete) => break,
                    Ok(Parsed::Refused) => replies.push("refused".to_string()),
                    Ok(Parsed::Request) => replies.push(String::from_utf8_lossy(&args[0]).into()),
                    Err(error) => panic!("{error}"),
                }
            }
            assert!(buf.len() <= 4096, "buffered {}", buf.len());
        }
        assert_eq!(replies, ["refused", "PING"]);
        assert!(buf.is_empty());

        // Within the room: parsed as usual. Arguments after the refused one are dropped too,
        // whatever their size, and a malformed header among them is still a protocol error.
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$2\r\nab\r\n$1\r\nc\r\n"[..]);
        assert_eq!(
            parser.parse_within(&mut buf, &mut args, 6),
            Ok(Parsed::Request)
        );
        let mut buf = BytesMut::from(
            &b"*3\r\n$3\r\nSET\r\n$20\r\n01234567890123456789\r\n$1\r\nc\r\n$4\r\nPING\r\n"[..],
        );
        assert_eq!(
            parser.parse_within(&mut buf, &mut args, 10),
            Ok(Parsed::Refused)
        );
        assert_eq!(&buf[..], b"$4\r\nPING\r\n");
        let mut buf =
            BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$20\r\n01234567890123456789\r\n+x\r\n"[..]);
        assert_eq!(
            parser.parse_within(&mut buf, &mut args, 10),
            Err(ProtocolError::ExpectedBulk('+'))
        );
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$600000000\r\n"[..]);
        assert_eq!(
            parser.parse_within(&mut buf, &mut args, 10),
            Err(ProtocolError::InvalidBulkLength)
        );
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let mut args = Vec::new();
        split_inline(br#"a "x\x41\n" 'it\'s'"#, &mut args).unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("a"), Bytes::from("xA\n"), Bytes::from("it's")]
        );
    }
}
