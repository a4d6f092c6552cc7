//! The request parser: RESP multibulk requests (`*N` of `$len` bulk strings) and inline
//! commands (`PING\r\n`), with Redis's limits and its exact `Protocol error: ...` texts. Arguments
//! are zero-copy slices of the read buffer.
//!
//! The parser is an incremental state machine: a request that arrives over many reads is
//! parsed where the previous read left off, so every byte is examined once however slowly the
//! request is sent (a parser that restarted from the first argument on every read spent time
//! quadratic in the request's size on a client trickling a large request). A request whole in
//! the buffer (what a pipelining client sends) is parsed straight through, without the
//! machine's stops; at anything else that path hands the machine its place, so both examine
//! the same bytes and answer alike. Until the connection is authenticated, requests are held
//! to Redis's pre-AUTH limits: at most [`UNAUTHENTICATED_MAX_ARGS`] arguments of at most
//! [`UNAUTHENTICATED_MAX_BULK_LEN`] bytes.
//!
//! A request whose declared argument bytes exceed the room the caller gives
//! ([`RequestParser::parse_within`]) is refused: its bytes are dropped as they arrive, never
//! buffered, and the caller answers it (with `OOM`).

use bytes::{Buf, Bytes, BytesMut};

/// Largest single buffer reservation made for a partially received argument.
const MAX_RESERVE_STEP: usize = 4 * 1024 * 1024;

/// Most arguments of a request from a connection that has not authenticated (Redis: 10).
pub const UNAUTHENTICATED_MAX_ARGS: usize = 10;

/// Largest argument of a request from a connection that has not authenticated (Redis: 16 KiB).
pub const UNAUTHENTICATED_MAX_BULK_LEN: usize = 16 * 1024;

/// Size limits applied while parsing requests of an authenticated connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string argument (Redis `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Most arguments in one request (`proto-max-multibulk-len`, 1024*1024).
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
    /// More than [`UNAUTHENTICATED_MAX_ARGS`] arguments before authentication.
    #[error("unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// An argument above [`UNAUTHENTICATED_MAX_BULK_LEN`] bytes before authentication.
    #[error("unauthenticated bulk length")]
    UnauthenticatedBulkLength,
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

/// Where the parser is within the request at the front of the buffer. Positions are offsets
/// from the buffer's start, which moves only when a whole request is consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No request started.
    Start,
    /// In the `*N` line; bytes before `scanned` hold no newline.
    MultibulkHeader { scanned: usize },
    /// Before the `$len` line of the next argument at `at`, `remaining` arguments to go; bytes
    /// before `scanned` hold no newline.
    BulkHeader {
        remaining: usize,
        at: usize,
        scanned: usize,
    },
    /// Waiting for an argument's `len` bytes from `start` and the two bytes after them.
    BulkData {
        remaining: usize,
        start: usize,
        len: usize,
    },
    /// In an inline line; bytes before `scanned` hold no newline.
    Inline { scanned: usize },
}

/// Parses requests out of a connection's read buffer, resuming where the previous call
/// stopped. The buffer's front must not change between calls except through the parser (a
/// connection only appends what it reads).
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    authenticated: bool,
    state: State,
    spans: Vec<(usize, usize)>,
    examined: u64,
    /// Argument bytes the current request's headers declared so far.
    declared: u64,
    discard: Option<Discard>,
}

impl Default for RequestParser {
    fn default() -> Self {
        RequestParser::new(Limits::default())
    }
}

fn find_newline(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    // Redis looks for '\r' and requires the '\n' after it; a bare '\n' inside a header makes
    // the number invalid below, which gives the same error text.
    rest.iter()
        .position(|&byte| byte == b'\n')
        .map(|at| from + at)
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

/// The `$len` header at `at` of an argument whose bytes are all in `input`, of at most
/// `max_len` and `room` bytes: its newline and length; `None` for anything else (the state
/// machine then decides what it is).
fn buffered_header(input: &[u8], at: usize, room: u64, max_len: u64) -> Option<(usize, usize)> {
    if *input.get(at)? != b'$' {
        return None;
    }
    let newline = find_newline(input, at + 1)?;
    let len = u64::try_from(parse_len(&input[at + 1..newline])?).ok()?;
    if len > max_len || len > room {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    let end = newline.checked_add(len)?.checked_add(3)?;
    (input.len() >= end).then_some((newline, len))
}

/// What one step of the state machine did.
enum Step {
    /// Moved on; run the next step.
    Continue,
    /// Needs more bytes.
    Wait,
    /// A request is complete (possibly empty).
    Done,
    /// A request was refused for its size; its rest is being dropped.
    Refused,
}

impl RequestParser {
    /// A parser with the given limits, for an authenticated connection.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            authenticated: true,
            state: State::Start,
            spans: Vec::new(),
            examined: 0,
            declared: 0,
            discard: None,
        }
    }

    /// Replaces the limits (CONFIG SET); a request already started keeps the checks it passed.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether the connection is authenticated; until it is, requests are held to Redis's
    /// pre-AUTH limits. Set before every [`RequestParser::parse`]: an AUTH lifts the limits
    /// for the next request of the same pipeline, as in Redis.
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// Bytes examined so far (newline searches and length digits); payloads are skipped by
    /// their declared length without being examined. Every byte is examined at most twice,
    /// however the requests were split across reads.
    pub fn bytes_examined(&self) -> u64 {
        self.examined
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
        if self.state == State::Start
            && self.discard.is_none()
            && self.parse_buffered(buf, args, room)
        {
            return Ok(Parsed::Request);
        }
        loop {
            if self.discard.is_some() {
                match self.continue_discard(buf)? {
                    Parsed::Refused => return Ok(Parsed::Refused),
                    _ => return Ok(Parsed::Incomplete),
                }
            }
            let step = match self.state {
                State::Start => {
                    let Some(&first) = buf.first() else {
                        return Ok(Parsed::Incomplete);
                    };
                    self.spans.clear();
                    self.declared = 0;
                    self.state = if first == b'*' {
                        State::MultibulkHeader { scanned: 1 }
                    } else {
                        State::Inline { scanned: 0 }
                    };
                    Step::Continue
                }
                State::MultibulkHeader { scanned } => self.multibulk_header(buf, scanned)?,
                State::BulkHeader {
                    remaining,
                    at,
                    scanned,
                } => self.bulk_header(buf, remaining, at, scanned, room)?,
                State::BulkData {
                    remaining,
                    start,
                    len,
                } => self.bulk_data(buf, remaining, start, len, args),
                State::Inline { scanned } => self.inline(buf, scanned, args)?,
            };
            match step {
                Step::Continue => {}
                Step::Wait => return Ok(Parsed::Incomplete),
                Step::Refused => self.state = State::Start,
                Step::Done => {
                    self.state = State::Start;
                    if !args.is_empty() {
                        return Ok(Parsed::Request);
                    }
                }
            }
        }
    }

    /// The fast path for a multibulk request that is whole in `buf` and within every limit
    /// (a pipelined client's usual request): parsed straight through, without the state
    /// machine's stops. It counts what it examines as the state machine does, and at anything
    /// else (a partial, invalid, refused or empty request) it stops before the header it
    /// cannot take, leaving the state machine there with what was parsed so far, so no byte
    /// is examined more often than that machine examines it, and every refusal and error is
    /// the machine's own. True when the request was parsed into `args`.
    fn parse_buffered(&mut self, buf: &mut BytesMut, args: &mut Vec<Bytes>, room: u64) -> bool {
        let input = &buf[..];
        if input.first() != Some(&b'*') {
            return false;
        }
        let Some(newline) = find_newline(input, 1) else {
            return false;
        };
        let Some(count) = parse_len(&input[1..newline]) else {
            return false;
        };
        if count <= 0
            || count > i64::from(i32::MAX)
            || (!self.authenticated && count > UNAUTHENTICATED_MAX_ARGS as i64)
            || count > self.limits.max_args as i64
        {
            return false;
        }
        let max_bulk_len = if self.authenticated {
            self.limits.max_bulk_len as u64
        } else {
            (self.limits.max_bulk_len as u64).min(UNAUTHENTICATED_MAX_BULK_LEN as u64)
        };
        self.examined += 2 * newline as u64 - 1;
        self.spans.clear();
        let mut declared = 0u64;
        let mut at = newline + 1;
        let mut remaining = count as usize;
        let end = loop {
            let header = buffered_header(input, at, room - declared, max_bulk_len);
            let Some((newline, len)) = header else {
                // The state machine takes over at this header, as if it had parsed up to here.
                self.declared = declared;
                self.state = State::BulkHeader {
                    remaining,
                    at,
                    scanned: at,
                };
                return false;
            };
            self.examined += 2 * (newline - at) as u64 - 1;
            declared += len as u64;
            let start = newline + 1;
            self.spans.push((start, start + len));
            // Redis skips the two bytes after the payload without checking them.
            at = start + len + 2;
            remaining -= 1;
            if remaining == 0 {
                break at;
            }
        };
        self.declared = declared;
        let frame = buf.split_to(end).freeze();
        args.extend(
            self.spans
                .iter()
                .map(|&(start, end)| frame.slice(start..end)),
        );
        true
    }

    /// Searches `buf[from..]` for a newline, counting the bytes examined.
    fn newline(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let found = find_newline(buf, from);
        let end = found.map_or(buf.len(), |at| at + 1);
        self.examined += end.saturating_sub(from) as u64;
        found
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
            let Some(newline) = find_newline(buf, 1) else {
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

    fn multibulk_header(
        &mut self,
        buf: &mut BytesMut,
        scanned: usize,
    ) -> Result<Step, ProtocolError> {
        let Some(newline) = self.newline(buf, scanned) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::MultibulkCountTooBig);
            }
            self.state = State::MultibulkHeader { scanned: buf.len() };
            return Ok(Step::Wait);
        };
        self.examined += (newline - 1) as u64;
        let count = parse_len(&buf[1..newline]).ok_or(ProtocolError::InvalidMultibulkLength)?;
        // Redis's order: a count above INT_MAX is invalid, then the pre-AUTH limit, then the
        // configured one (the error text tells which limit was hit).
        if count > i64::from(i32::MAX) {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if !self.authenticated && count > UNAUTHENTICATED_MAX_ARGS as i64 {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        if count > self.limits.max_args as i64 {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if count <= 0 {
            let _ = buf.split_to(newline + 1);
            return Ok(Step::Done);
        }
        let at = newline + 1;
        self.state = State::BulkHeader {
            remaining: count as usize,
            at,
            scanned: at,
        };
        Ok(Step::Continue)
    }

    fn bulk_header(
        &mut self,
        buf: &mut BytesMut,
        remaining: usize,
        at: usize,
        scanned: usize,
        room: u64,
    ) -> Result<Step, ProtocolError> {
        let Some(&tag) = buf.get(at) else {
            return Ok(Step::Wait);
        };
        if tag != b'$' {
            return Err(ProtocolError::ExpectedBulk(tag as char));
        }
        let from = scanned.max(at + 1);
        let Some(newline) = self.newline(buf, from) else {
            if buf.len() - at > self.limits.max_inline_len {
                return Err(ProtocolError::BulkCountTooBig);
            }
            self.state = State::BulkHeader {
                remaining,
                at,
                scanned: buf.len(),
            };
            return Ok(Step::Wait);
        };
        self.examined += (newline - at - 1) as u64;
        let len = parse_len(&buf[at + 1..newline]).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > self.limits.max_bulk_len as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if !self.authenticated && len as u64 > UNAUTHENTICATED_MAX_BULK_LEN as u64 {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        self.declared += len as u64;
        if self.declared > room {
            // Refused before its bytes are buffered: drop what arrived of the request (it
            // starts at the buffer's front), and the rest as it comes.
            let end = newline + 1 + len as usize + 2;
            let have = buf.len().min(end);
            buf.advance(have);
            self.discard = Some(Discard {
                bulk_left: end - have,
                args_left: remaining - 1,
            });
            return Ok(Step::Refused);
        }
        self.state = State::BulkData {
            remaining,
            start: newline + 1,
            len: len as usize,
        };
        Ok(Step::Continue)
    }

    fn bulk_data(
        &mut self,
        buf: &mut BytesMut,
        remaining: usize,
        start: usize,
        len: usize,
        args: &mut Vec<Bytes>,
    ) -> Step {
        let end = start + len;
        if buf.len() < end + 2 {
            // Grow towards the whole argument in steps of at most 4 MiB: a header alone must
            // not make the server allocate 512 MiB.
            buf.reserve((end + 2 - buf.len()).min(MAX_RESERVE_STEP));
            return Step::Wait;
        }
        self.spans.push((start, end));
        // Redis skips the two bytes after the payload without checking them.
        let next = end + 2;
        if remaining > 1 {
            self.state = State::BulkHeader {
                remaining: remaining - 1,
                at: next,
                scanned: next,
            };
            return Step::Continue;
        }
        let frame = buf.split_to(next).freeze();
        args.extend(
            self.spans
                .iter()
                .map(|&(start, end)| frame.slice(start..end)),
        );
        Step::Done
    }

    fn inline(
        &mut self,
        buf: &mut BytesMut,
        scanned: usize,
        args: &mut Vec<Bytes>,
    ) -> Result<Step, ProtocolError> {
        let Some(newline) = self.newline(buf, scanned) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::InlineTooBig);
            }
            self.state = State::Inline { scanned: buf.len() };
            return Ok(Step::Wait);
        };
        if newline > self.limits.max_inline_len {
            return Err(ProtocolError::InlineTooBig);
        }
        let line = buf.split_to(newline + 1);
        self.examined += line.len() as u64;
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_inline(line, args)?;
        if args.len() > self.limits.max_args {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        Ok(Step::Done)
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
#[path = "request_tests.rs"]
mod tests;
