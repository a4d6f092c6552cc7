//! Tests of the request parser: Redis's framing and error texts, the pre-AUTH limits,
//! linear-time parsing of a trickled request, and requests refused for their size.

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
        parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n\r\nSET a \"b c\"\r\n").unwrap();
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

fn parse_unauthenticated(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let mut parser = RequestParser::default();
    parser.set_authenticated(false);
    let mut buf = BytesMut::from(input);
    let mut args = Vec::new();
    let mut requests = Vec::new();
    while parser.parse(&mut buf, &mut args)? {
        requests.push(args.iter().map(|arg| arg.to_vec()).collect());
    }
    Ok(requests)
}

#[test]
fn unauthenticated_requests_are_held_to_redis_limits() {
    // The texts and thresholds of redis-server 7 with requirepass (checked byte for byte).
    assert_eq!(
        parse_unauthenticated(b"*11\r\n"),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    assert_eq!(parse_unauthenticated(b"*10\r\n"), Ok(vec![]));
    assert_eq!(
        parse_unauthenticated(b"*2000000\r\n"),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    assert_eq!(
        parse_unauthenticated(b"*3000000000\r\n"),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert_eq!(
        parse_unauthenticated(b"*1\r\n$16385\r\n"),
        Err(ProtocolError::UnauthenticatedBulkLength)
    );
    assert_eq!(
        parse_unauthenticated(b"*1\r\n$600000000\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    assert_eq!(parse_unauthenticated(b"*1\r\n$16384\r\n"), Ok(vec![]));
    assert_eq!(
        ProtocolError::UnauthenticatedMultibulkLength.to_string(),
        "unauthenticated multibulk length"
    );
    assert_eq!(
        ProtocolError::UnauthenticatedBulkLength.to_string(),
        "unauthenticated bulk length"
    );
}

#[test]
fn authenticating_lifts_the_limits_for_the_next_request() {
    let mut parser = RequestParser::default();
    parser.set_authenticated(false);
    let mut buf = BytesMut::from(&b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$20000\r\n"[..]);
    let mut args = Vec::new();
    assert_eq!(parser.parse(&mut buf, &mut args), Ok(true));
    assert_eq!(args, vec![Bytes::from("AUTH"), Bytes::from("pw")]);
    parser.set_authenticated(true);
    assert_eq!(parser.parse(&mut buf, &mut args), Ok(false));
    buf.extend_from_slice(&vec![b'x'; 20000]);
    buf.extend_from_slice(b"\r\n");
    assert_eq!(parser.parse(&mut buf, &mut args), Ok(true));
    assert_eq!(args[0].len(), 20000);
}

#[test]
fn configured_limits_apply_after_authentication() {
    let mut parser = RequestParser::new(Limits {
        max_bulk_len: 1024,
        max_args: 3,
        ..Limits::default()
    });
    let mut args = Vec::new();
    let mut buf = BytesMut::from(&b"*4\r\n"[..]);
    assert_eq!(
        parser.parse(&mut buf, &mut args),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    let mut parser = RequestParser::default();
    parser.set_limits(Limits {
        max_bulk_len: 1024,
        ..Limits::default()
    });
    let mut buf = BytesMut::from(&b"*1\r\n$1025\r\n"[..]);
    assert_eq!(
        parser.parse(&mut buf, &mut args),
        Err(ProtocolError::InvalidBulkLength)
    );
}

/// A pipeline of inline and multibulk requests, with empty ones between.
fn sample_pipeline() -> Vec<u8> {
    let mut input = Vec::new();
    input.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
    input.extend_from_slice(b"PING\r\n*0\r\n\r\n");
    input.extend_from_slice(b"*1\r\n$0\r\n\r\n");
    input.extend_from_slice(b"ECHO 'a b'\r\n");
    input
}

#[test]
fn a_request_split_anywhere_parses_as_a_whole() {
    let input = sample_pipeline();
    let whole = parse_all(&input).unwrap();
    assert_eq!(whole.len(), 4);
    for cut in 0..=input.len() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&input[..cut]);
        let mut args = Vec::new();
        let mut requests = Vec::new();
        while parser.parse(&mut buf, &mut args).unwrap() {
            requests.push(args.iter().map(|arg| arg.to_vec()).collect::<Vec<_>>());
        }
        buf.extend_from_slice(&input[cut..]);
        while parser.parse(&mut buf, &mut args).unwrap() {
            requests.push(args.iter().map(|arg| arg.to_vec()).collect::<Vec<_>>());
        }
        assert_eq!(requests, whole, "cut at {cut}");
    }
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_parsed_in_linear_time() {
    // 10,000 arguments of 10 bytes: about 170 KB. Restarting from the first argument on
    // every byte would examine about 170 KB * 170 KB / 2 = 14 GB.
    let count = 10_000;
    let mut request = format!("*{count}\r\n").into_bytes();
    for index in 0..count {
        request.extend_from_slice(format!("$10\r\n{index:010}\r\n").as_bytes());
    }
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    for (position, &byte) in request.iter().enumerate() {
        buf.extend_from_slice(&[byte]);
        let complete = parser.parse(&mut buf, &mut args).unwrap();
        assert_eq!(complete, position == request.len() - 1, "byte {position}");
    }
    assert_eq!(args.len(), count);
    assert_eq!(
        &args[count - 1][..],
        format!("{:010}", count - 1).as_bytes()
    );
    let examined = parser.bytes_examined();
    assert!(
        examined <= 2 * request.len() as u64,
        "examined {examined} bytes for a request of {}",
        request.len()
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

#[test]
fn inline_quotes_and_escapes() {
    let mut args = Vec::new();
    split_inline(br#"a "x\x41\n" 'it\'s'"#, &mut args).unwrap();
    assert_eq!(
        args,
        vec![Bytes::from("a"), Bytes::from("xA\n"), Bytes::from("it's")]
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
    let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$20\r\n01234567890123456789\r\n+x\r\n"[..]);
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

/// Parses `input` in pieces of `piece` bytes with `room`, returning what each call answered
/// (requests as their arguments) and the bytes examined.
fn parse_in_pieces(input: &[u8], piece: usize, room: u64) -> (Vec<String>, u64) {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut answers = Vec::new();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse_within(&mut buf, &mut args, room) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Refused) => answers.push("refused".to_string()),
                Ok(Parsed::Request) => answers.push(format!("{args:?}")),
                Err(error) => panic!("{error}"),
            }
        }
    }
    assert!(buf.is_empty(), "left {buf:?}");
    (answers, parser.bytes_examined())
}

/// A request whole in the buffer (parsed straight through) and the same bytes arriving one
/// at a time (through every state of the parser) give the same requests, the same refusals,
/// and examine exactly the same bytes.
#[test]
fn whole_and_trickled_requests_parse_alike_and_examine_the_same_bytes() {
    let mut input = sample_pipeline();
    input.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n");
    // Exactly the room (11 bytes declared), then one byte over it.
    input.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$8\r\n01234567\r\n");
    input.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$9\r\n012345678\r\n");
    input.extend_from_slice(b"*-1\r\n*1\r\n$4\r\nPING\r\n");
    let expected = [
        r#"[b"SET", b"key", b"value"]"#,
        r#"[b"PING"]"#,
        r#"[b""]"#,
        r#"[b"ECHO", b"a b"]"#,
        "refused",
        r#"[b"GET", b"01234567"]"#,
        "refused",
        r#"[b"PING"]"#,
    ];
    let (whole, examined) = parse_in_pieces(&input, input.len(), 11);
    assert_eq!(whole, expected);
    for piece in [1, 2, 3, 7] {
        assert_eq!(
            parse_in_pieces(&input, piece, 11),
            (whole.clone(), examined),
            "pieces of {piece}"
        );
    }
}
