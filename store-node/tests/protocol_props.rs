//! Property tests for the RESP parser and encoder: arbitrary bytes never panic, and every frame
//! round-trips through encode and decode.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use store_node::protocol::decode::decode;
use store_node::protocol::{Frame, Protocol, RequestParser};

fn frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,20}".prop_map(|text| Frame::Simple(text.into())),
        "ERR [a-z ]{0,20}".prop_map(|text| Frame::Error(text.into())),
        any::<i64>().prop_map(Frame::Integer),
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|data| Frame::Bulk(Bytes::from(data))),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        (-1e12f64..1e12).prop_map(Frame::Double),
        proptest::collection::vec(any::<u8>(), 0..32)
            .prop_map(|data| Frame::Verbatim(Bytes::from(data))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Set),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut parser = RequestParser::default();
        let mut buffer = BytesMut::from(&input[..]);
        let mut args = Vec::new();
        for _ in 0..1024 {
            match parser.parse(&mut buffer, &mut args) {
                Ok(true) => prop_assert!(!args.is_empty()),
                Ok(false) | Err(_) => break,
            }
        }
    }

    #[test]
    fn decoder_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&input);
    }

    #[test]
    fn resp3_round_trip(frame in frame()) {
        let encoded = frame.to_bytes(Protocol::Resp3);
        let (decoded, used) = decode(&encoded).unwrap().unwrap();
        prop_assert_eq!(used, encoded.len());
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn requests_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..10)) {
        let request = Frame::Array(args.iter().map(|arg| Frame::Bulk(Bytes::copy_from_slice(arg))).collect());
        let mut buffer = BytesMut::from(&request.to_bytes(Protocol::Resp2)[..]);
        // Two copies back to back: pipelining.
        buffer.extend_from_slice(&request.to_bytes(Protocol::Resp2));
        let mut parser = RequestParser::default();
        let mut parsed = Vec::new();
        for _ in 0..2 {
            prop_assert!(parser.parse(&mut buffer, &mut parsed).unwrap());
            let parsed: Vec<Vec<u8>> = parsed.iter().map(|arg| arg.to_vec()).collect();
            prop_assert_eq!(&parsed, &args);
        }
        prop_assert!(buffer.is_empty());
    }

    #[test]
    fn requests_split_across_reads_parse_as_a_whole(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..10),
        cuts in proptest::collection::vec(0usize..400, 0..8),
    ) {
        let request = Frame::Array(args.iter().map(|arg| Frame::Bulk(Bytes::copy_from_slice(arg))).collect());
        let mut input = request.to_bytes(Protocol::Resp2).to_vec();
        input.extend_from_slice(b"PING\r\n");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut.min(input.len())).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        // One parser fed the pipeline in pieces, as reads deliver it.
        let mut parser = RequestParser::default();
        let mut buffer = BytesMut::new();
        let mut parsed = Vec::new();
        let mut requests: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut from = 0;
        for cut in cuts {
            buffer.extend_from_slice(&input[from..cut]);
            from = cut;
            while parser.parse(&mut buffer, &mut parsed).unwrap() {
                requests.push(parsed.iter().map(|arg| arg.to_vec()).collect());
            }
        }
        prop_assert_eq!(requests, vec![args, vec![b"PING".to_vec()]]);
        prop_assert!(buffer.is_empty());
    }

    #[test]
    fn partial_requests_wait(args in proptest::collection::vec("[a-z]{1,8}", 1..5), cut in 0usize..100) {
        let request = Frame::Array(args.iter().map(|arg| Frame::bulk(arg.as_bytes())).collect()).to_bytes(Protocol::Resp2);
        let cut = cut.min(request.len() - 1);
        let mut buffer = BytesMut::from(&request[..cut]);
        let mut parsed = Vec::new();
        prop_assert!(!RequestParser::default().parse(&mut buffer, &mut parsed).unwrap());
    }
}
