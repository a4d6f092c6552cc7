//! Peer messages and their framing. A frame is `u32 length | u32 CRC-32 | body` (big-endian),
//! the body is `u8 format version | u8 message tag | fields`; frames above the size limit, with
//! a bad checksum or a malformed body are refused with an error, never a panic, whatever the
//! bytes (a proptest feeds garbage). Strings and byte strings are `u32 length | bytes`, lists are
//! `u32 count | items`.
//!
//! Body format 2 carries records as mergeable states (`crate::store::state`) and anti-entropy
//! versions as state hashes. Format 1, the previous one (records as whole values, versions as
//! stamps), still decodes: the write-ahead log and snapshots of an older data directory are
//! made of such frames. Peers speak one protocol version; a peer of another is refused at the
//! handshake (a cluster never mixes versions).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::store::codec::{put_bytes, put_record, put_stamp, DecodeError, Reader};
use crate::store::{Record, RecordView, Touch};

/// The peer protocol version announced in [`Hello`]; peers with another version are refused
/// (no mixed-version cluster: docs/replication.md): the check is at the handshake, so nodes of
/// different versions never form a cluster (every node of a cluster may then use every message
/// of its version). Version 2: a connection opens with the peer key's challenge-response (or
/// mutual TLS) before the hello, heartbeats carry the wall clocks and the memory alarm,
/// [`Message::Publish`] carries PUBLISH, records are mergeable states and anti-entropy
/// compares state hashes.
pub const PROTOCOL_VERSION: u16 = 2;

/// The body format version (first body byte) this build writes.
const FORMAT_VERSION: u8 = 2;

/// The previous body format: records as whole values, read from older data directories.
const LEGACY_FORMAT_VERSION: u8 = 1;

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
    /// Liveness and state, both ways; also the measurement of the peers' clocks: the dialer
    /// sends its wall clock, the acceptor answers with its own and echoes the dialer's.
    Heartbeat {
        /// The sender's state.
        state: NodeState,
        /// The sender's log head.
        head: u64,
        /// The sender's wall clock (Unix ms, uncorrected) when it sent this.
        wall_ms: u64,
        /// In an answer, the `wall_ms` of the heartbeat it answers; 0 otherwise.
        echo_ms: u64,
        /// Whether the sender's memory alarm is raised: every node holds every key, so the
        /// others refuse growth writes (or evict) meanwhile (docs/memory.md). A trailing byte,
        /// absent from the heartbeats of builds without it (read as `false`).
        memory_alarm: bool,
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
    /// The `(key, state hash)` list of one differing bucket; `done` ends the list of buckets.
    BucketKeys {
        /// Bucket index.
        bucket: u16,
        /// Keys stored in that bucket with their state hashes.
        keys: Vec<(Bytes, u64)>,
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
    /// A `PUBLISH` (or `SPUBLISH`) made on the sender, for the receiver's own subscribers:
    /// neither stored nor logged, sent once on the sender's link to each peer.
    Publish {
        /// `SPUBLISH` (a shard channel) rather than `PUBLISH`.
        shard: bool,
        /// The channel.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
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
            Message::Publish { .. } => "publish",
        }
    }
}

/// CRC-32 (IEEE 802.3) of `data`, by crc32fast: carry-less multiplication (PCLMULQDQ) where
/// the CPU has it, about 13x faster than slicing-by-8 tables (84 ns against 1.08 us per KiB,
/// measured here). Every replicated and logged record is checksummed, so with tables a 1 KiB
/// SET in disc mode would pay that microsecond on the client's thread.
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
/// small buffer would re-allocate and copy a 1 KiB record three times on its way to the log
/// and the peers.
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
        Message::Publish {
            channel, message, ..
        } => channel.len() + message.len() + 8,
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
/// buffer it keeps: a fresh buffer per frame makes the allocator fault in new zeroed pages
/// over and over under write load (measured at a fifth of a replicating node's CPU), and the
/// frames queued at once leave in one write.
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
        Message::Heartbeat {
            state,
            head,
            wall_ms,
            echo_ms,
            memory_alarm,
        } => {
            out.put_u8(3);
            out.put_u8(state.code());
            out.put_u64(*head);
            out.put_u64(*wall_ms);
            out.put_u64(*echo_ms);
            out.put_u8(u8::from(*memory_alarm));
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
            for (key, version) in keys {
                put_bytes(out, key);
                out.put_u64(*version);
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
        Message::Publish {
            shard,
            channel,
            message,
        } => {
            out.put_u8(13);
            out.put_u8(u8::from(*shard));
            put_bytes(out, channel);
            put_bytes(out, message);
        }
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
    if format != FORMAT_VERSION && format != LEGACY_FORMAT_VERSION {
        return Err(WireError::Format(format));
    }
    let legacy = format == LEGACY_FORMAT_VERSION;
    reader.set_legacy(legacy);
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
            wall_ms: reader.u64()?,
            echo_ms: reader.u64()?,
            memory_alarm: reader.remaining() > 0 && reader.bool()?,
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
            let count = reader.count(4 + 8)?;
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                let key = reader.bytes()?;
                // The previous format listed stamps; a version is only compared for equality.
                let version = if legacy {
                    let stamp = reader.stamp()?;
                    stamp.hlc ^ u64::from(stamp.origin).rotate_left(32)
                } else {
                    reader.u64()?
                };
                keys.push((key, version));
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
        13 => Message::Publish {
            shard: reader.bool()?,
            channel: reader.bytes()?,
            message: reader.bytes()?,
        },
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
mod tests;
