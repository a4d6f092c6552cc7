//! Peer messages and their framing. A frame is `u32 length | u32 CRC-32 | body` (big-endian),
//! the body is `u8 format version | u8 message tag | fields`; frames above the size limit, with
//! a bad checksum or a malformed body are refused with an error, never a panic, whatever the
//! bytes (a proptest feeds garbage). Strings and byte strings are `u32 length | bytes`, lists are
//! `u32 count | items`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::store::codec::{put_bytes, put_record, put_stamp, DecodeError, Reader};
use crate::store::{Record, RecordView, Stamp, Touch};

/// The peer protocol version announced in [`Hello`]; peers with another version are refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The body format version (first body byte).
const FORMAT_VERSION: u8 = 1;

/// Frame header: length and checksum.
pub const HEADER_LEN: usize = 8;

/// Default largest frame body accepted (bytes).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// What is wrong with received bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame announces more bytes than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The checksum does not match the body.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The body uses an unknown format version.
    #[error("unsupported frame format version {0}")]
    Format(u8),
    /// Unknown message tag.
    #[error("unknown message tag {0}")]
    Tag(u8),
    /// The body ended before a field.
    #[error("truncated message body")]
    Truncated,
    /// Bytes left after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// A field has an invalid value.
    #[error("invalid field {0}")]
    Invalid(&'static str),
}

impl From<DecodeError> for WireError {
    fn from(error: DecodeError) -> WireError {
        match error {
            DecodeError::Truncated => WireError::Truncated,
            DecodeError::Invalid(field) => WireError::Invalid(field),
        }
    }
}

/// A node's replication state, as announced to peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Bootstrapping: not serving, not a snapshot source.
    Loading,
    /// Synced and serving.
    Ready,
    /// Flushing before exit.
    Leaving,
    /// Flushed; about to exit.
    Left,
}

impl NodeState {
    /// The name used in `/v1/status` (`loading`, `ready`, `leaving`, `left`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Loading => "loading",
            NodeState::Ready => "ready",
            NodeState::Leaving => "leaving",
            NodeState::Left => "left",
        }
    }

    fn code(self) -> u8 {
        match self {
            NodeState::Loading => 0,
            NodeState::Ready => 1,
            NodeState::Leaving => 2,
            NodeState::Left => 3,
        }
    }

    fn from_code(code: u8) -> Result<NodeState, WireError> {
        Ok(match code {
            0 => NodeState::Loading,
            1 => NodeState::Ready,
            2 => NodeState::Leaving,
            3 => NodeState::Left,
            _ => return Err(WireError::Invalid("node state")),
        })
    }
}

/// The first message on a connection, in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u16,
    /// Cluster name; nodes of different clusters refuse each other.
    pub cluster: String,
    /// The sender's node name (`POD_NAME`).
    pub node_name: String,
    /// The sender's node id (its stamp origin; new at every start in ram mode).
    pub node_id: u32,
    /// The address peers reach the sender at.
    pub advertise: String,
    /// The sender's state.
    pub state: NodeState,
    /// Whether the sender holds any data.
    pub has_data: bool,
}

/// One peer message. The dialing side pushes its log and drives snapshots and anti-entropy
/// rounds; the accepting side answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Handshake.
    Hello(Hello),
    /// Log items `first_seq ..= first_seq + records + touches - 1`.
    Batch {
        /// Sequence of the first item.
        first_seq: u64,
        /// Records.
        records: Vec<Record>,
        /// Touches.
        touches: Vec<Touch>,
    },
    /// Everything up to `seq` of the dialer's log was applied.
    Ack {
        /// Cumulative sequence.
        seq: u64,
    },
    /// Liveness and state, both ways.
    Heartbeat {
        /// The sender's state.
        state: NodeState,
        /// The sender's log head.
        head: u64,
    },
    /// Asks for a full snapshot.
    SnapshotRequest,
    /// Part of a snapshot.
    SnapshotChunk {
        /// Records, tombstones included.
        records: Vec<Record>,
    },
    /// The snapshot is complete; it holds the sender's log up to `seq`.
    SnapshotEnd {
        /// Log head when the snapshot started.
        seq: u64,
    },
    /// Starts an anti-entropy round with the dialer's bucket digests.
    Digest {
        /// One digest per bucket.
        buckets: Vec<u64>,
    },
    /// The `(key, stamp)` list of one differing bucket; `done` ends the list of buckets.
    BucketKeys {
        /// Bucket index.
        bucket: u16,
        /// Versions stored in that bucket.
        keys: Vec<(Bytes, Stamp)>,
        /// Last message of the answer to a [`Message::Digest`].
        done: bool,
    },
    /// Asks for the records of keys.
    RepairRequest {
        /// Keys the sender wants.
        keys: Vec<Bytes>,
    },
    /// Records sent to repair differences.
    RepairRecords {
        /// Records.
        records: Vec<Record>,
    },
    /// Ends an anti-entropy round; echoed by the accepting side once everything before it
    /// was processed.
    RoundEnd,
    /// The sender is leaving the cluster (scale-down); do not wait for it.
    Leave,
}

impl Message {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Batch { .. } => "batch",
            Message::Ack { .. } => "ack",
            Message::Heartbeat { .. } => "heartbeat",
            Message::SnapshotRequest => "snapshot-request",
            Message::SnapshotChunk { .. } => "snapshot-chunk",
            Message::SnapshotEnd { .. } => "snapshot-end",
            Message::Digest { .. } => "digest",
            Message::BucketKeys { .. } => "bucket-keys",
            Message::RepairRequest { .. } => "repair-request",
            Message::RepairRecords { .. } => "repair-records",
            Message::RoundEnd => "round-end",
            Message::Leave => "leave",
        }
    }
}

/// CRC-32 (IEEE 802.3) of `data`, by crc32fast: carry-less multiplication (PCLMULQDQ) where
/// the CPU has it, about 13x the slicing-by-8 tables this replaced (84 ns against 1.08 us per
/// KiB here); every replicated and logged record is checksummed, so a 1 KiB SET in disc mode
/// paid that microsecond on the client's thread.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

fn put_records(out: &mut BytesMut, records: &[Record]) {
    out.put_u32(records.len() as u32);
    for record in records {
        put_record(out, &record.view());
    }
}

/// Fills in the length and checksum of the frame that starts at `frame[0]` and fills the
/// slice; fails when its body exceeds `max_frame` (the caller drops the bytes).
fn seal_frame(frame: &mut [u8], max_frame: usize) -> Result<usize, WireError> {
    let len = frame.len() - HEADER_LEN;
    if len > max_frame {
        return Err(WireError::TooLarge {
            len,
            max: max_frame,
        });
    }
    let crc = crc32(&frame[HEADER_LEN..]);
    frame[0..4].copy_from_slice(&(len as u32).to_be_bytes());
    frame[4..8].copy_from_slice(&crc.to_be_bytes());
    Ok(frame.len())
}

/// Which message a [`RecordsFrame`] encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsMessage {
    /// [`Message::SnapshotChunk`].
    SnapshotChunk,
    /// [`Message::RepairRecords`].
    RepairRecords,
}

/// A frame of records (a [`Message::SnapshotChunk`] or [`Message::RepairRecords`]) encoded in
/// place at the end of a caller's buffer, record by record from borrowed views: the write-ahead
/// log encodes each write straight into its queue and a snapshot straight from the stored
/// entries, with no [`Record`] copy or frame allocation in between.
#[derive(Debug, Clone, Copy)]
pub struct RecordsFrame {
    start: usize,
    count: u32,
}

impl RecordsFrame {
    /// Starts the frame at the end of `out`.
    pub fn begin(out: &mut Vec<u8>, message: RecordsMessage) -> RecordsFrame {
        let start = out.len();
        out.put_bytes(0, HEADER_LEN);
        out.put_u8(FORMAT_VERSION);
        out.put_u8(match message {
            RecordsMessage::SnapshotChunk => 5,
            RecordsMessage::RepairRecords => 10,
        });
        out.put_u32(0);
        RecordsFrame { start, count: 0 }
    }

    /// Appends one record.
    pub fn push(&mut self, out: &mut Vec<u8>, record: &RecordView<'_>) {
        put_record(out, record);
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the frame so far.
    pub fn len(&self, out: &[u8]) -> usize {
        out.len() - self.start
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes the frame from `out` (nothing to send).
    pub fn cancel(self, out: &mut Vec<u8>) {
        out.truncate(self.start);
    }

    /// Completes the frame and returns its length; when its body exceeds `max_frame` the
    /// frame is removed from `out` and the error says by how much.
    pub fn finish(self, out: &mut Vec<u8>, max_frame: usize) -> Result<usize, WireError> {
        let count_at = self.start + HEADER_LEN + 2;
        out[count_at..count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        seal_frame(&mut out[self.start..], max_frame).inspect_err(|_| out.truncate(self.start))
    }
}

/// An upper bound of the encoded size of `message`'s records and touches (0 for the other
/// messages, which are small): [`encode_frame`] allocates it up front, since growing from a
/// small buffer re-allocated and copied a 1 KiB record three times on its way to the log and
/// the peers.
fn size_hint(message: &Message) -> usize {
    let records_len = |records: &[Record]| {
        records
            .iter()
            .map(|record| record.size() + 2)
            .sum::<usize>()
    };
    match message {
        Message::Batch {
            records, touches, ..
        } => records_len(records) + touches.iter().map(|touch| touch.size() + 2).sum::<usize>(),
        Message::SnapshotChunk { records } | Message::RepairRecords { records } => {
            records_len(records)
        }
        _ => 0,
    }
}

/// Encodes a message into a whole frame; fails when the body exceeds `max_frame`.
pub fn encode_frame(message: &Message, max_frame: usize) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    encode_frame_into(message, max_frame, &mut out)?;
    Ok(out.freeze())
}

/// Appends the whole frame of `message` to `out` and returns its length; fails (leaving `out`
/// as it was) when the body exceeds `max_frame`. A link's sender encodes every frame into one
/// buffer it keeps: a fresh buffer per frame made the allocator fault in new zeroed pages
/// over and over under write load (a fifth of a replicating node's CPU), and the frames queued
/// at once leave in one write.
pub fn encode_frame_into(
    message: &Message,
    max_frame: usize,
    out: &mut BytesMut,
) -> Result<usize, WireError> {
    let start = out.len();
    out.reserve(HEADER_LEN + 64 + size_hint(message));
    out.put_bytes(0, HEADER_LEN);
    out.put_u8(FORMAT_VERSION);
    match message {
        Message::Hello(hello) => {
            out.put_u8(0);
            out.put_u16(hello.protocol_version);
            put_bytes(out, hello.cluster.as_bytes());
            put_bytes(out, hello.node_name.as_bytes());
            out.put_u32(hello.node_id);
            put_bytes(out, hello.advertise.as_bytes());
            out.put_u8(hello.state.code());
            out.put_u8(u8::from(hello.has_data));
        }
        Message::Batch {
            first_seq,
            records,
            touches,
        } => {
            out.put_u8(1);
            out.put_u64(*first_seq);
            put_records(out, records);
            out.put_u32(touches.len() as u32);
            for touch in touches {
                put_bytes(out, &touch.key);
                put_stamp(out, touch.value_stamp);
                out.put_u64(touch.expire_at);
            }
        }
        Message::Ack { seq } => {
            out.put_u8(2);
            out.put_u64(*seq);
        }
        Message::Heartbeat { state, head } => {
            out.put_u8(3);
            out.put_u8(state.code());
            out.put_u64(*head);
        }
        Message::SnapshotRequest => out.put_u8(4),
        Message::SnapshotChunk { records } => {
            out.put_u8(5);
            put_records(out, records);
        }
        Message::SnapshotEnd { seq } => {
            out.put_u8(6);
            out.put_u64(*seq);
        }
        Message::Digest { buckets } => {
            out.put_u8(7);
            out.put_u32(buckets.len() as u32);
            for digest in buckets {
                out.put_u64(*digest);
            }
        }
        Message::BucketKeys { bucket, keys, done } => {
            out.put_u8(8);
            out.put_u16(*bucket);
            out.put_u8(u8::from(*done));
            out.put_u32(keys.len() as u32);
            for (key, stamp) in keys {
                put_bytes(out, key);
                put_stamp(out, *stamp);
            }
        }
        Message::RepairRequest { keys } => {
            out.put_u8(9);
            out.put_u32(keys.len() as u32);
            for key in keys {
                put_bytes(out, key);
            }
        }
        Message::RepairRecords { records } => {
            out.put_u8(10);
            put_records(out, records);
        }
        Message::RoundEnd => out.put_u8(11),
        Message::Leave => out.put_u8(12),
    }
    seal_frame(&mut out[start..], max_frame).inspect_err(|_| out.truncate(start))
}

/// Decodes a frame body (after the header was checked); keys and values are copied out of it.
pub fn decode_body(body: &[u8]) -> Result<Message, WireError> {
    decode_with(Reader::new(body))
}

/// Decodes a frame body whose keys and values stay slices of `body` (no copy, no allocation
/// per key or value): a replicated record is copied once, into the store's entry, and the
/// body is freed once the message is applied. The transport decodes frames this way.
pub fn decode_shared(body: &Bytes) -> Result<Message, WireError> {
    decode_with(Reader::shared(body))
}

fn decode_with(mut reader: Reader<'_>) -> Result<Message, WireError> {
    let format = reader.u8()?;
    if format != FORMAT_VERSION {
        return Err(WireError::Format(format));
    }
    let message = match reader.u8()? {
        0 => Message::Hello(Hello {
            protocol_version: reader.u16()?,
            cluster: reader.string()?,
            node_name: reader.string()?,
            node_id: reader.u32()?,
            advertise: reader.string()?,
            state: NodeState::from_code(reader.u8()?)?,
            has_data: reader.bool()?,
        }),
        1 => {
            let first_seq = reader.u64()?;
            let records = reader.records()?;
            let count = reader.count(4 + 12 + 8)?;
            let mut touches = Vec::with_capacity(count);
            for _ in 0..count {
                touches.push(Touch {
                    key: reader.bytes()?,
                    value_stamp: reader.stamp()?,
                    expire_at: reader.u64()?,
                });
            }
            Message::Batch {
                first_seq,
                records,
                touches,
            }
        }
        2 => Message::Ack { seq: reader.u64()? },
        3 => Message::Heartbeat {
            state: NodeState::from_code(reader.u8()?)?,
            head: reader.u64()?,
        },
        4 => Message::SnapshotRequest,
        5 => Message::SnapshotChunk {
            records: reader.records()?,
        },
        6 => Message::SnapshotEnd { seq: reader.u64()? },
        7 => {
            let count = reader.count(8)?;
            let mut buckets = Vec::with_capacity(count);
            for _ in 0..count {
                buckets.push(reader.u64()?);
            }
            Message::Digest { buckets }
        }
        8 => {
            let bucket = reader.u16()?;
            let done = reader.bool()?;
            let count = reader.count(4 + 12)?;
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                keys.push((reader.bytes()?, reader.stamp()?));
            }
            Message::BucketKeys { bucket, keys, done }
        }
        9 => {
            let count = reader.count(4)?;
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                keys.push(reader.bytes()?);
            }
            Message::RepairRequest { keys }
        }
        10 => Message::RepairRecords {
            records: reader.records()?,
        },
        11 => Message::RoundEnd,
        12 => Message::Leave,
        tag => return Err(WireError::Tag(tag)),
    };
    if reader.remaining() > 0 {
        return Err(WireError::Trailing(reader.remaining()));
    }
    Ok(message)
}

/// Parses a frame header into (body length, checksum), refusing bodies above `max_frame`.
pub fn parse_header(header: [u8; HEADER_LEN], max_frame: usize) -> Result<(usize, u32), WireError> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > max_frame {
        return Err(WireError::TooLarge {
            len,
            max: max_frame,
        });
    }
    Ok((len, crc))
}

/// Checks a body against its checksum and decodes it.
pub fn decode_checked(body: &[u8], crc: u32) -> Result<Message, WireError> {
    if crc32(body) != crc {
        return Err(WireError::Checksum);
    }
    decode_body(body)
}

/// Takes one whole frame off the front of `buffer` if there is one.
pub fn split_frame(buffer: &mut BytesMut, max_frame: usize) -> Result<Option<Message>, WireError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buffer[..HEADER_LEN]);
    let (len, crc) = parse_header(header, max_frame)?;
    if buffer.len() < HEADER_LEN + len {
        return Ok(None);
    }
    buffer.advance(HEADER_LEN);
    let body = buffer.split_to(len).freeze();
    if crc32(&body) != crc {
        return Err(WireError::Checksum);
    }
    decode_shared(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RecordState, Value};
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
                keys: vec![(Bytes::from_static(b"k"), stamp)],
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
        let RecordState::Live {
            value: Value::String(value),
            ..
        } = &records[0].state
        else {
            panic!("not a live string");
        };
        let inside = body.as_ptr_range();
        assert!(inside.contains(&value.as_ptr()) && inside.contains(&records[0].key.as_ptr()));
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
}
