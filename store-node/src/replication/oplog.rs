//! The outgoing op-log: every local record and every flushed touch gets the next sequence
//! number and stays in a bounded in-memory queue (by count and by bytes) from which each peer
//! link pushes batches. [`PeerCursor`] tracks, per peer, up to which sequence the peer is known
//! to hold everything; a peer whose position fell off the log (or that is new) has a gap that
//! only an anti-entropy round or a snapshot can close. Items every member holds are released
//! early ([`OpLog::release_through`]): no link reads them again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::store::{Record, Touch};

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    /// A local write.
    Record(Record),
    /// A coalesced touch.
    Touch(Touch),
}

impl LogItem {
    /// Approximate size in bytes.
    pub fn size(&self) -> usize {
        match self {
            LogItem::Record(record) => record.size(),
            LogItem::Touch(touch) => touch.size(),
        }
    }
}

/// Reading from a position the log no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("op-log position {requested} was evicted; the oldest retained is {first_available}")]
pub struct Truncated {
    /// The sequence asked for.
    pub requested: u64,
    /// The oldest sequence still in the log.
    pub first_available: u64,
}

#[derive(Debug)]
struct Inner {
    items: VecDeque<(LogItem, usize)>,
    /// Sequence of `items[0]` (or of the next append when empty).
    first_seq: u64,
    bytes: usize,
}

/// A bounded log of outgoing items with sequence numbers starting at 1.
#[derive(Debug)]
pub struct OpLog {
    inner: Mutex<Inner>,
    max_items: usize,
    max_bytes: usize,
    head: watch::Sender<u64>,
    /// Items up to this sequence may be dropped (see [`OpLog::release_through`]).
    released: AtomicU64,
}

impl OpLog {
    /// An empty log keeping at most `max_items` items and `max_bytes` bytes (the newest item is
    /// always kept).
    pub fn new(max_items: usize, max_bytes: usize) -> OpLog {
        OpLog {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                first_seq: 1,
                bytes: 0,
            }),
            max_items: max_items.max(1),
            max_bytes,
            head: watch::Sender::new(0),
            released: AtomicU64::new(0),
        }
    }

    /// Appends an item and returns its sequence number; cheap and non-blocking (called from the
    /// store's write path). Drops the released items first.
    pub fn append(&self, item: LogItem) -> u64 {
        let size = item.size();
        let released = self.released.load(Ordering::Relaxed);
        let mut inner = self.inner.lock();
        while inner.first_seq <= released {
            let Some((_, dropped)) = inner.items.pop_front() else {
                break;
            };
            inner.bytes -= dropped;
            inner.first_seq += 1;
        }
        inner.items.push_back((item, size));
        inner.bytes += size;
        let seq = inner.first_seq + inner.items.len() as u64 - 1;
        while inner.items.len() > 1
            && (inner.items.len() > self.max_items || inner.bytes > self.max_bytes)
        {
            if let Some((_, evicted)) = inner.items.pop_front() {
                inner.bytes -= evicted;
                inner.first_seq += 1;
            }
        }
        drop(inner);
        self.head.send_replace(seq);
        seq
    }

    /// Lets the next appends drop every item up to `seq`, because every member holds them. No
    /// link reads them again: a member that reconnects resumes after what it holds, and any
    /// other peer starts at the head with a gap that anti-entropy closes, as when the log
    /// overflows. They are dropped by the appending thread, not here, because the store's write
    /// path allocated them there: freed on the thread that allocated them, their memory is
    /// reused by the next records instead of new pages.
    pub fn release_through(&self, seq: u64) {
        self.released.fetch_max(seq, Ordering::Relaxed);
    }

    /// The last sequence appended (0 when nothing was).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// The oldest sequence still held (`head + 1` when empty).
    pub fn first_seq(&self) -> u64 {
        self.inner.lock().first_seq
    }

    /// Retained items and bytes.
    pub fn len_and_bytes(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.items.len(), inner.bytes)
    }

    /// Items from `from` on, at most `max_items` and about `max_bytes` (at least one item when
    /// any is available).
    pub fn read(
        &self,
        from: u64,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, LogItem)>, Truncated> {
        let inner = self.inner.lock();
        if from < inner.first_seq {
            return Err(Truncated {
                requested: from,
                first_available: inner.first_seq,
            });
        }
        let skip = (from - inner.first_seq) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for (offset, (item, size)) in inner.items.iter().enumerate().skip(skip) {
            if !out.is_empty() && (out.len() >= max_items || bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            out.push((inner.first_seq + offset as u64, item.clone()));
        }
        Ok(out)
    }

    /// Notified with the head sequence after every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

/// How far one peer is known to hold this node's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCursor {
    /// The peer holds everything up to this sequence (by acks of a gap-free stream, a snapshot
    /// or an anti-entropy round).
    pub synced: u64,
    /// First sequence of the current push stream.
    pub stream_start: u64,
    /// Highest sequence of the current stream the peer acknowledged.
    pub stream_acked: u64,
}

impl PeerCursor {
    /// Starts a push stream at `start`; returns whether it leaves a gap (items the peer may lack
    /// that the stream will not carry).
    pub fn start_stream(&mut self, start: u64) -> bool {
        self.stream_start = start;
        self.stream_acked = 0;
        start > self.synced + 1
    }

    /// The peer acknowledged the stream up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        self.stream_acked = self.stream_acked.max(seq);
        self.fold();
    }

    /// An anti-entropy round (or snapshot) made the peer hold everything up to `horizon`.
    pub fn synced_to(&mut self, horizon: u64) {
        self.synced = self.synced.max(horizon);
        self.fold();
    }

    fn fold(&mut self) {
        if self.stream_start <= self.synced + 1 {
            self.synced = self.synced.max(self.stream_acked);
        }
    }

    /// Whether the peer holds the items `first..=last`: everything up to `last` is synced, or
    /// the current stream carried all of them (it started at or before `first`) and the peer
    /// acknowledged it up to `last`. Items of an earlier stream that were acknowledged but not
    /// folded into `synced` are not counted (conservative).
    pub fn holds(&self, first: u64, last: u64) -> bool {
        last <= self.synced || (self.stream_start <= first && self.stream_acked >= last)
    }

    /// Whether the stream currently has a gap.
    pub fn has_gap(&self) -> bool {
        self.stream_start > self.synced + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stamp;
    use bytes::Bytes;

    fn touch(index: u64) -> LogItem {
        LogItem::Touch(Touch {
            key: Bytes::from(format!("k{index}")),
            value_stamp: Stamp {
                hlc: index,
                origin: 1,
            },
            expire_at: index,
        })
    }

    #[test]
    fn sequences_start_at_one_and_reads_resume() {
        let log = OpLog::new(100, 1 << 20);
        assert_eq!(log.head(), 0);
        assert_eq!(log.read(1, 10, 1 << 20), Ok(vec![]));
        for index in 1..=5 {
            assert_eq!(log.append(touch(index)), index);
        }
        assert_eq!(log.head(), 5);
        let read = log.read(2, 2, 1 << 20).unwrap_or_default();
        assert_eq!(read, vec![(2, touch(2)), (3, touch(3))]);
        assert_eq!(log.read(6, 10, 1 << 20), Ok(vec![]));
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let log = OpLog::new(3, 1 << 20);
        for index in 1..=5 {
            log.append(touch(index));
        }
        assert_eq!(log.first_seq(), 3);
        assert_eq!(
            log.read(2, 10, 1 << 20),
            Err(Truncated {
                requested: 2,
                first_available: 3
            })
        );
        assert_eq!(log.read(3, 10, 1 << 20).map(|items| items.len()), Ok(3));

        let size = touch(1).size();
        let log = OpLog::new(100, size * 2);
        for index in 1..=4 {
            log.append(touch(index));
        }
        assert_eq!(log.len_and_bytes(), (2, size * 2));
        assert_eq!(log.first_seq(), 3);
        // A byte budget smaller than one item still returns one item.
        assert_eq!(log.read(3, 10, 1).map(|items| items.len()), Ok(1));
    }

    #[test]
    fn released_items_go_at_the_next_append() {
        let log = OpLog::new(100, 1 << 20);
        for index in 1..=5 {
            log.append(touch(index));
        }
        log.release_through(3);
        assert_eq!(log.len_and_bytes().0, 5, "kept until the next append");
        assert_eq!(log.append(touch(6)), 6);
        assert_eq!(log.first_seq(), 4);
        assert_eq!(log.len_and_bytes(), (3, 3 * touch(1).size()));
        assert_eq!(
            log.read(3, 10, 1 << 20),
            Err(Truncated {
                requested: 3,
                first_available: 4
            })
        );
        assert_eq!(log.read(4, 10, 1 << 20).map(|items| items.len()), Ok(3));
        // Never backwards, and everything released still leaves the new item.
        log.release_through(2);
        log.release_through(7);
        assert_eq!(log.append(touch(7)), 7);
        assert_eq!(log.first_seq(), 7);
        assert_eq!(log.read(7, 10, 1 << 20), Ok(vec![(7, touch(7))]));
    }

    #[test]
    fn cursor_without_gap_follows_acks() {
        let mut cursor = PeerCursor::default();
        assert!(!cursor.start_stream(1));
        cursor.ack(4);
        assert_eq!(cursor.synced, 4);
        // Reconnect and resume where it left off.
        assert!(!cursor.start_stream(5));
        cursor.ack(9);
        assert_eq!(cursor.synced, 9);
    }

    #[test]
    fn cursor_with_gap_waits_for_anti_entropy() {
        let mut cursor = PeerCursor::default();
        assert!(cursor.start_stream(50));
        cursor.ack(60);
        assert_eq!(cursor.synced, 0);
        assert!(cursor.has_gap());
        cursor.synced_to(55);
        assert_eq!(cursor.synced, 60);
        assert!(!cursor.has_gap());
    }

    #[test]
    fn a_gapped_stream_holds_the_writes_it_carried() {
        // A new incarnation of the peer: the stream starts at the head, 10 items in.
        let mut cursor = PeerCursor::default();
        assert!(cursor.start_stream(11));
        assert!(!cursor.holds(11, 12));
        cursor.ack(12);
        assert!(cursor.holds(11, 12));
        assert!(cursor.holds(12, 12));
        assert!(!cursor.holds(12, 13), "not acknowledged yet");
        assert!(
            !cursor.holds(10, 12),
            "10 was written before the stream started"
        );
        assert!(
            !cursor.holds(1, 12),
            "everything up to 12: only after the gap closes"
        );
        cursor.synced_to(10);
        assert!(cursor.holds(1, 12));
        // A reconnection forgets what the previous stream acknowledged beyond `synced`.
        let mut cursor = PeerCursor::default();
        assert!(cursor.start_stream(20));
        cursor.ack(25);
        assert!(cursor.start_stream(26));
        assert!(!cursor.holds(21, 25));
    }

    #[test]
    fn subscribers_see_the_head() {
        let log = OpLog::new(10, 1 << 20);
        let receiver = log.subscribe();
        log.append(touch(1));
        assert_eq!(*receiver.borrow(), 1);
    }
}
