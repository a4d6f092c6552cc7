//! Tests of the peer framing: every message round-trips, frames split across reads or appended
//! to one buffer decode, corrupted, oversized and unknown frames are refused, the CRC-32 matches
//! its definition, and proptests feed garbage that must never panic.

use super::*;
use crate::store::{Stamp, Value};
use proptest::prelude::*;

fn samples() -> Vec<Message> {
    let stamp = Stamp {
        hlc: 0x1234_5678_9abc,
        origin: 7,
    };
    let live = Record::live(
        Bytes::from_static(b"session:1"),
        stamp,
        Value::String(Bytes::from_static(b"data")),
        Some(99),
    );
    let hash = Record::live(
        Bytes::from_static(b"h"),
        stamp,
        Value::Hash(vec![
            (Bytes::from_static(b"f"), Bytes::from_static(b"v")),
            (Bytes::new(), Bytes::new()),
        ]),
        None,
    );
    let tombstone = Record::tombstone(Bytes::from_static(b"gone"), stamp, 1_700_000_000_000);
    vec![
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster: "demo".into(),
            node_name: "demo-0".into(),
            node_id: 42,
            advertise: "10.0.0.1:7379".into(),
            state: NodeState::Loading,
            has_data: true,
        }),
        Message::Batch {
            first_seq: 10,
            records: vec![live.clone(), hash, tombstone.clone()],
            touches: vec![Touch {
                key: Bytes::from_static(b"session:1"),
                value_stamp: stamp,
                expire_at: 1234,
            }],
        },
        Message::Ack { seq: u64::MAX },
        Message::Heartbeat {
            state: NodeState::Left,
            head: 3,
            memory_alarm: true,
            wall_ms: 1_700_000_000_000,
            echo_ms: u64::MAX,
        },
        Message::SnapshotRequest,
        Message::SnapshotChunk {
            records: vec![live.clone()],
        },
        Message::SnapshotEnd { seq: 5 },
        Message::Digest {
            buckets: vec![1, 2, u64::MAX],
        },
        Message::BucketKeys {
            bucket: 255,
            keys: vec![(Bytes::from_static(b"k"), u64::MAX - 1)],
            done: true,
        },
        Message::RepairRequest {
            keys: vec![Bytes::from_static(b"k"), Bytes::new()],
        },
        Message::RepairRecords {
            records: vec![tombstone, live],
        },
        Message::RoundEnd,
        Message::Leave,
        Message::Publish {
            shard: true,
            channel: Bytes::from_static(b"news"),
            message: Bytes::new(),
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for message in samples() {
        let frame = encode_frame(&message, DEFAULT_MAX_FRAME).unwrap_or_default();
        let mut buffer = BytesMut::from(&frame[..]);
        assert_eq!(
            split_frame(&mut buffer, DEFAULT_MAX_FRAME),
            Ok(Some(message.clone())),
            "{}",
            message.name()
        );
        assert!(buffer.is_empty());
    }
}

#[test]
fn frames_append_to_one_buffer_and_decode_without_copies() {
    let mut buffer = BytesMut::new();
    let mut total = 0;
    for message in samples() {
        total += encode_frame_into(&message, DEFAULT_MAX_FRAME, &mut buffer).unwrap_or(0);
    }
    assert_eq!(total, buffer.len());
    // A frame over the limit fails and leaves what was queued intact.
    let big = Message::Digest {
        buckets: vec![1; 64],
    };
    assert!(matches!(
        encode_frame_into(&big, 16, &mut buffer),
        Err(WireError::TooLarge { .. })
    ));
    assert_eq!(total, buffer.len());
    let mut decoded = Vec::new();
    while let Ok(Some(message)) = split_frame(&mut buffer, DEFAULT_MAX_FRAME) {
        decoded.push(message);
    }
    assert_eq!(decoded, samples());
    assert!(buffer.is_empty());
    // Keys and values of a frame decoded by the transport are slices of the frame body.
    let record = Record::live(
        Bytes::from_static(b"key"),
        Stamp { hlc: 1, origin: 2 },
        Value::String(Bytes::from(vec![b'v'; 1024])),
        None,
    );
    let frame = encode_frame(
        &Message::RepairRecords {
            records: vec![record.clone()],
        },
        DEFAULT_MAX_FRAME,
    )
    .unwrap_or_default();
    let body = frame.slice(HEADER_LEN..);
    let Ok(Message::RepairRecords { records }) = decode_shared(&body) else {
        panic!("not decoded");
    };
    assert_eq!(records, vec![record]);
    let inside = body.as_ptr_range();
    assert!(
        inside.contains(&records[0].payload.as_ptr()) && inside.contains(&records[0].key.as_ptr())
    );
}

/// Frames of the previous format (body format 1: records as whole values) still decode, as
/// whole values that replace older states: an older data directory's log is made of them.
#[test]
fn frames_of_the_previous_format_decode_as_whole_values() {
    let mut body = vec![1u8, 10];
    body.extend_from_slice(&2u32.to_be_bytes());
    // A live hash with an expiry.
    body.extend_from_slice(&1u32.to_be_bytes());
    body.push(b'h');
    body.extend_from_slice(&7u64.to_be_bytes());
    body.extend_from_slice(&3u32.to_be_bytes());
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(&1_000u64.to_be_bytes());
    body.push(1);
    body.extend_from_slice(&1u32.to_be_bytes());
    for part in [&b"f"[..], b"v"] {
        body.extend_from_slice(&(part.len() as u32).to_be_bytes());
        body.extend_from_slice(part);
    }
    // A tombstone.
    body.extend_from_slice(&1u32.to_be_bytes());
    body.push(b't');
    body.extend_from_slice(&8u64.to_be_bytes());
    body.extend_from_slice(&3u32.to_be_bytes());
    body.push(1);
    body.extend_from_slice(&55u64.to_be_bytes());
    let Ok(Message::RepairRecords { records }) = decode_body(&body) else {
        panic!("not decoded");
    };
    let stamp = |hlc| Stamp { hlc, origin: 3 };
    let mut hash = Record::live(
        Bytes::from_static(b"h"),
        stamp(7),
        Value::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]),
        Some(1_000),
    );
    hash.replaces = true;
    let mut tombstone = Record::tombstone(Bytes::from_static(b"t"), stamp(8), 55);
    tombstone.replaces = true;
    assert_eq!(records, vec![hash, tombstone]);
}

#[test]
fn frames_split_across_reads() {
    let frames: Vec<u8> = samples()
        .iter()
        .flat_map(|message| {
            encode_frame(message, DEFAULT_MAX_FRAME)
                .unwrap_or_default()
                .to_vec()
        })
        .collect();
    let mut buffer = BytesMut::new();
    let mut decoded = Vec::new();
    for chunk in frames.chunks(7) {
        buffer.extend_from_slice(chunk);
        while let Ok(Some(message)) = split_frame(&mut buffer, DEFAULT_MAX_FRAME) {
            decoded.push(message);
        }
    }
    assert_eq!(decoded, samples());
}

#[test]
fn corrupted_oversized_and_unknown_frames_are_refused() {
    let frame = encode_frame(&Message::Ack { seq: 1 }, DEFAULT_MAX_FRAME).unwrap_or_default();
    let mut corrupted = BytesMut::from(&frame[..]);
    let last = corrupted.len() - 1;
    corrupted[last] ^= 1;
    assert_eq!(
        split_frame(&mut corrupted, DEFAULT_MAX_FRAME),
        Err(WireError::Checksum)
    );

    let mut oversized = BytesMut::from(&frame[..]);
    assert_eq!(
        split_frame(&mut oversized, 4),
        Err(WireError::TooLarge { len: 10, max: 4 })
    );
    assert_eq!(
        encode_frame(
            &Message::Digest {
                buckets: vec![0; 10]
            },
            16
        ),
        Err(WireError::TooLarge {
            len: 2 + 4 + 80,
            max: 16
        })
    );

    assert_eq!(
        decode_body(&[FORMAT_VERSION, 200]),
        Err(WireError::Tag(200))
    );
    assert_eq!(decode_body(&[9, 2]), Err(WireError::Format(9)));
    assert_eq!(
        decode_body(&[FORMAT_VERSION, 11, 0]),
        Err(WireError::Trailing(1))
    );
    // A forged list count larger than the body is refused before allocating.
    assert_eq!(
        decode_body(&[FORMAT_VERSION, 9, 0xff, 0xff, 0xff, 0xff]),
        Err(WireError::Truncated)
    );
}

/// A heartbeat without the trailing memory byte reads as no alarm; the byte that announces it
/// is 0 or 1, and nothing may follow it.
#[test]
fn a_heartbeat_without_the_memory_byte_reads_as_no_alarm() {
    let mut body = vec![FORMAT_VERSION, 3, 1];
    body.extend_from_slice(&7u64.to_be_bytes());
    body.extend_from_slice(&11u64.to_be_bytes());
    body.extend_from_slice(&0u64.to_be_bytes());
    assert_eq!(
        decode_body(&body),
        Ok(Message::Heartbeat {
            state: NodeState::Ready,
            head: 7,
            wall_ms: 11,
            echo_ms: 0,
            memory_alarm: false,
        })
    );
    body.push(1);
    assert_eq!(
        decode_body(&body),
        Ok(Message::Heartbeat {
            state: NodeState::Ready,
            head: 7,
            wall_ms: 11,
            echo_ms: 0,
            memory_alarm: true,
        })
    );
    body.push(0);
    assert_eq!(decode_body(&body), Err(WireError::Trailing(1)));
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414f_a339
    );
}

/// The bit-at-a-time definition of CRC-32 (IEEE), to check the fast one against.
fn crc32_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

proptest! {
    #[test]
    fn crc32_equals_the_bitwise_definition(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(crc32(&data), crc32_bitwise(&data));
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_body(&data);
        let mut buffer = BytesMut::from(&data[..]);
        let _ = split_frame(&mut buffer, 1024);
    }

    #[test]
    fn garbage_with_a_valid_checksum_never_panics(tag in 0u8..14, rest in proptest::collection::vec(any::<u8>(), 0..512)) {
        // A valid format byte and tag, so the fields themselves get fuzzed.
        let mut body = vec![FORMAT_VERSION, tag];
        body.extend_from_slice(&rest);
        let mut frame = Vec::new();
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32(&body).to_be_bytes());
        frame.extend_from_slice(&body);
        let mut buffer = BytesMut::from(&frame[..]);
        let _ = split_frame(&mut buffer, 1024);
    }

    #[test]
    fn records_round_trip(key in proptest::collection::vec(any::<u8>(), 0..40), value in proptest::collection::vec(any::<u8>(), 0..40), hlc: u64, origin: u32, expire in proptest::option::of(any::<u64>())) {
        let record = Record::live(Bytes::from(key), Stamp { hlc, origin }, Value::String(Bytes::from(value)), expire);
        let message = Message::RepairRecords { records: vec![record] };
        let frame = encode_frame(&message, DEFAULT_MAX_FRAME).unwrap_or_default();
        prop_assert!(frame.len() <= HEADER_LEN + 64 + size_hint(&message));
        let mut buffer = BytesMut::from(&frame[..]);
        prop_assert_eq!(split_frame(&mut buffer, DEFAULT_MAX_FRAME), Ok(Some(message)));
    }

    #[test]
    fn the_size_hint_bounds_every_record_batch(records in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..2000), proptest::option::of(any::<u64>()), any::<bool>()), 0..20)) {
        let records: Vec<Record> = records
            .into_iter()
            .map(|(key, value, expire, tombstone)| {
                let stamp = Stamp { hlc: 1, origin: 2 };
                if tombstone {
                    Record::tombstone(Bytes::from(key), stamp, 7)
                } else {
                    Record::live(Bytes::from(key), stamp, Value::String(Bytes::from(value)), expire)
                }
            })
            .collect();
        let message = Message::Batch { first_seq: 1, records, touches: Vec::new() };
        let frame = encode_frame(&message, usize::MAX).unwrap_or_default();
        prop_assert!(frame.len() <= HEADER_LEN + 64 + size_hint(&message));
    }

    /// The log and snapshots encode borrowed records in place: the bytes must be exactly
    /// the frame of the same message, and decode back to its records.
    #[test]
    fn records_frames_built_in_place_equal_the_messages(records in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..300), proptest::option::of(any::<u64>()), 0u8..3), 0..12), prefix in proptest::collection::vec(any::<u8>(), 0..20)) {
        let records: Vec<Record> = records
            .into_iter()
            .map(|(key, value, expire, kind)| {
                let stamp = Stamp { hlc: 5, origin: 9 };
                match kind {
                    0 => Record::tombstone(Bytes::from(key), stamp, 7),
                    1 => Record::live(Bytes::from(key), stamp, Value::String(Bytes::from(value)), expire),
                    _ => {
                        let fields = value
                            .chunks(7)
                            .map(|pair| (Bytes::copy_from_slice(&pair[..pair.len() / 2]), Bytes::copy_from_slice(&pair[pair.len() / 2..])))
                            .collect();
                        Record::live(Bytes::from(key), stamp, Value::Hash(fields), expire)
                    }
                }
            })
            .collect();
        for (kind, message) in [
            (RecordsMessage::SnapshotChunk, Message::SnapshotChunk { records: records.clone() }),
            (RecordsMessage::RepairRecords, Message::RepairRecords { records: records.clone() }),
        ] {
            let mut out = prefix.clone();
            let mut frame = RecordsFrame::begin(&mut out, kind);
            for record in &records {
                frame.push(&mut out, &record.view());
            }
            prop_assert_eq!(frame.count() as usize, records.len());
            let len = frame.finish(&mut out, DEFAULT_MAX_FRAME).expect("fits");
            let expected = encode_frame(&message, DEFAULT_MAX_FRAME).expect("fits");
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&out[prefix.len()..], &expected[..]);
            prop_assert_eq!(len, expected.len());
            let mut buffer = BytesMut::from(&out[prefix.len()..]);
            prop_assert_eq!(split_frame(&mut buffer, DEFAULT_MAX_FRAME), Ok(Some(message)));
        }
    }
}

#[test]
fn a_records_frame_over_the_limit_is_removed_and_cancel_removes_it_too() {
    let record = Record::live(
        Bytes::from_static(b"key"),
        Stamp { hlc: 1, origin: 1 },
        Value::String(Bytes::from(vec![b'v'; 100])),
        None,
    );
    let mut out = b"before".to_vec();
    let mut frame = RecordsFrame::begin(&mut out, RecordsMessage::RepairRecords);
    frame.push(&mut out, &record.view());
    assert!(matches!(
        frame.finish(&mut out, 50),
        Err(WireError::TooLarge { max: 50, .. })
    ));
    assert_eq!(out, b"before");
    let frame = RecordsFrame::begin(&mut out, RecordsMessage::SnapshotChunk);
    assert!(frame.is_empty());
    frame.cancel(&mut out);
    assert_eq!(out, b"before");
}
