//! Fuzz target: the request parser and the frame decoder must never panic on any input, and
//! whatever the decoder accepts must re-encode to something it decodes to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use store_node::protocol::decode::decode;
use store_node::protocol::{Protocol, RequestParser};

fuzz_target!(|data: &[u8]| {
    let mut parser = RequestParser::default();
    let mut buffer = BytesMut::from(data);
    let mut args = Vec::new();
    while let Ok(true) = parser.parse(&mut buffer, &mut args) {
        assert!(!args.is_empty());
    }
    if let Ok(Some((frame, _))) = decode(data) {
        let encoded = frame.to_bytes(Protocol::Resp3);
        let again = decode(&encoded).ok().flatten().map(|(frame, _)| frame);
        // NaN never equals itself, so compare the encodings instead of the frames.
        assert_eq!(again.map(|frame| frame.to_bytes(Protocol::Resp3)), Some(encoded));
    }
});
