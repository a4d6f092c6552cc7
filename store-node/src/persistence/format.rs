//! The on-disc format: file names, the file header, and record framing.
//!
//! Every log segment (`wal-<seq>.log`) and snapshot (`snapshot-<seq>.snap`) starts with a
//! 26-byte header: 8 bytes of magic (`SSNWAL\r\n` or `SSNSNP\r\n`; the `\r\n` catches text-mode
//! mangling), `u16` format version, `u32` node id, `u64` segment sequence, and the CRC-32 of
//! those 22 bytes, all big-endian. Frames follow; a frame is exactly a replication wire frame
//! (`u32 length | u32 CRC-32 | body`, see `replication::wire`), reused rather than duplicated:
//! a log frame is a `RepairRecords` message holding one record, a snapshot is a sequence of
//! `SnapshotChunk` messages closed by a `SnapshotEnd { seq: <record count> }` trailer, so a
//! snapshot cut short is detected even when it ends on a frame boundary.
//!
//! This file is persistence's one door to `crate::replication::wire`: the rest of persistence
//! takes the frame types it needs ([`Message`], [`RecordsFrame`], [`RecordsMessage`],
//! [`WireError`]) from here.

use std::io::{self, Read};

use bytes::Bytes;

use crate::replication::wire::{self, HEADER_LEN as FRAME_HEADER_LEN};
pub use crate::replication::wire::{Message, RecordsFrame, RecordsMessage, WireError};
use crate::store::RecordView;

/// Magic of a log segment.
pub const WAL_MAGIC: [u8; 8] = *b"SSNWAL\r\n";

/// Magic of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SSNSNP\r\n";

/// On-disc format version written in every header: 2 since records are mergeable states.
/// Files of version 1 (records as whole values) are still read: their frames say which
/// format their records are in.
pub const FORMAT_VERSION: u16 = 2;

/// The oldest on-disc format version this build reads.
pub const OLDEST_FORMAT_VERSION: u16 = 1;

/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 26;

/// Length of a frame header (length and checksum).
pub const FRAME_HEADER: usize = FRAME_HEADER_LEN;

/// Default largest record frame: the replication frame limit, so any record a peer can send
/// fits the log.
pub const DEFAULT_MAX_RECORD_BYTES: usize = wire::DEFAULT_MAX_FRAME;

/// The node id file.
pub const NODE_ID_FILE: &str = "node-id";

/// The lock file held while a process uses the directory.
pub const LOCK_FILE: &str = "LOCK";

/// A snapshot being written (deleted at recovery: it was never renamed into place).
pub const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// Prefix of quarantine directories.
pub const DAMAGED_PREFIX: &str = "damaged-";

/// The file name of log segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

/// The file name of the snapshot taken when segment `seq` started.
pub fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

/// What a data directory entry is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `wal-<seq>.log`.
    Segment(u64),
    /// `snapshot-<seq>.snap`.
    Snapshot(u64),
    /// `snapshot.tmp`.
    SnapshotTmp,
    /// Anything else (node-id, LOCK, damaged-*, foreign files).
    Other,
}

/// Classifies a file name.
pub fn classify(name: &str) -> FileKind {
    if name == SNAPSHOT_TMP {
        return FileKind::SnapshotTmp;
    }
    let parse = |digits: &str| {
        (digits.len() == 20)
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    if let Some(seq) = name
        .strip_prefix("wal-")
        .and_then(|rest| rest.strip_suffix(".log"))
        .and_then(parse)
    {
        return FileKind::Segment(seq);
    }
    if let Some(seq) = name
        .strip_prefix("snapshot-")
        .and_then(|rest| rest.strip_suffix(".snap"))
        .and_then(parse)
    {
        return FileKind::Snapshot(seq);
    }
    FileKind::Other
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// [`WAL_MAGIC`] or [`SNAPSHOT_MAGIC`].
    pub magic: [u8; 8],
    /// The node that wrote the file.
    pub node_id: u32,
    /// The segment sequence (for a snapshot: the first segment replayed after it).
    pub seq: u64,
}

impl FileHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        out[0..8].copy_from_slice(&self.magic);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[10..14].copy_from_slice(&self.node_id.to_be_bytes());
        out[14..22].copy_from_slice(&self.seq.to_be_bytes());
        let crc = wire::crc32(&out[0..22]);
        out[22..26].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes and checks a header; the error says what is wrong.
    pub fn decode(bytes: &[u8; FILE_HEADER_LEN]) -> Result<FileHeader, String> {
        let crc = u32::from_be_bytes([bytes[22], bytes[23], bytes[24], bytes[25]]);
        if wire::crc32(&bytes[0..22]) != crc {
            return Err("file header checksum mismatch".to_string());
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[0..8]);
        if magic != WAL_MAGIC && magic != SNAPSHOT_MAGIC {
            return Err("unknown file magic".to_string());
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!("unsupported format version {version}"));
        }
        Ok(FileHeader {
            magic,
            node_id: u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]),
            seq: u64::from_be_bytes([
                bytes[14], bytes[15], bytes[16], bytes[17], bytes[18], bytes[19], bytes[20],
                bytes[21],
            ]),
        })
    }
}

/// Encodes one record as a log frame at the end of `out` and returns the frame's length; fails,
/// leaving `out` as it was, when the record exceeds `max_frame` bytes.
pub fn encode_record_into(
    record: &RecordView<'_>,
    max_frame: usize,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let mut frame = RecordsFrame::begin(out, RecordsMessage::RepairRecords);
    frame.push(out, record);
    frame.finish(out, max_frame)
}

/// Encodes the snapshot trailer.
pub fn encode_snapshot_end(records: u64) -> Result<Bytes, WireError> {
    wire::encode_frame(&Message::SnapshotEnd { seq: records }, u32::MAX as usize)
}

/// The outcome of reading one frame.
#[derive(Debug)]
pub enum FrameRead {
    /// A whole, checked frame and its length on disc.
    Frame(Message, u64),
    /// The file ends exactly here.
    End,
    /// The bytes here are not a valid frame (torn, corrupt or malformed): why.
    Damaged(String),
}

/// Reads frames from a file of known length without ever trusting a length field beyond the
/// bytes that are actually there.
pub struct FrameReader<R> {
    reader: R,
    remaining: u64,
    body: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// A reader over `remaining` bytes of `reader`.
    pub fn new(reader: R, remaining: u64) -> FrameReader<R> {
        FrameReader {
            reader,
            remaining,
            body: Vec::new(),
        }
    }

    /// Reads the next frame. I/O errors are returned as errors; bad bytes as
    /// [`FrameRead::Damaged`].
    pub fn next_frame(&mut self) -> io::Result<FrameRead> {
        if self.remaining == 0 {
            return Ok(FrameRead::End);
        }
        if self.remaining < FRAME_HEADER as u64 {
            return Ok(FrameRead::Damaged(format!(
                "torn frame header ({} bytes left)",
                self.remaining
            )));
        }
        let mut header = [0u8; FRAME_HEADER];
        self.reader.read_exact(&mut header)?;
        self.remaining -= FRAME_HEADER as u64;
        let (len, crc) = match wire::parse_header(header, usize::MAX) {
            Ok(parsed) => parsed,
            Err(error) => return Ok(FrameRead::Damaged(error.to_string())),
        };
        if len as u64 > self.remaining {
            return Ok(FrameRead::Damaged(format!(
                "frame of {len} bytes runs past the end of the file ({} bytes left)",
                self.remaining
            )));
        }
        self.body.resize(len, 0);
        self.reader.read_exact(&mut self.body)?;
        self.remaining -= len as u64;
        match wire::decode_checked(&self.body, crc) {
            Ok(message) => Ok(FrameRead::Frame(message, (FRAME_HEADER + len) as u64)),
            Err(error) => Ok(FrameRead::Damaged(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Stamp, Value};

    #[test]
    fn names_round_trip_and_sort_by_sequence() {
        assert_eq!(classify(&segment_name(7)), FileKind::Segment(7));
        assert_eq!(
            classify(&snapshot_name(u64::MAX)),
            FileKind::Snapshot(u64::MAX)
        );
        assert_eq!(classify("snapshot.tmp"), FileKind::SnapshotTmp);
        assert_eq!(classify("wal-7.log"), FileKind::Other);
        assert_eq!(classify("node-id"), FileKind::Other);
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let header = FileHeader {
            magic: WAL_MAGIC,
            node_id: 42,
            seq: 3,
        };
        let mut bytes = header.encode();
        assert_eq!(FileHeader::decode(&bytes), Ok(header));
        bytes[12] ^= 1;
        assert_eq!(
            FileHeader::decode(&bytes),
            Err("file header checksum mismatch".to_string())
        );
    }

    #[test]
    fn frames_read_back_and_damage_is_described() {
        let record = Record::live(
            Bytes::from_static(b"k"),
            Stamp { hlc: 1, origin: 2 },
            Value::String(Bytes::from_static(b"v")),
            None,
        );
        let mut frame = Vec::new();
        encode_record_into(&record.view(), 1 << 20, &mut frame).expect("encode");
        let mut file = frame.clone();
        file.extend_from_slice(&frame[..5]);
        let mut reader = FrameReader::new(&file[..], file.len() as u64);
        match reader.next_frame() {
            Ok(FrameRead::Frame(Message::RepairRecords { records }, len)) => {
                assert_eq!(records, vec![record]);
                assert_eq!(len, frame.len() as u64);
            }
            other => panic!("unexpected {other:?}"),
        }
        match reader.next_frame() {
            Ok(FrameRead::Damaged(reason)) => {
                assert_eq!(reason, "torn frame header (5 bytes left)")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
