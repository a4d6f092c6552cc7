//! Replication's view of this node's keyspace: [`Replica`] implemented by the engine, each
//! call one engine operation (remote records are merged and logged, never submitted back).

use bytes::Bytes;

use crate::replication::Replica;
use crate::store::{MemoryEngine, Record, RecordView, Touch};

impl Replica for MemoryEngine {
    fn apply(&self, record: &Record, now_ms: u64, forget_before_ms: u64) -> bool {
        self.merge_record(record, now_ms, forget_before_ms)
    }

    fn apply_touch(&self, touch: &Touch) -> bool {
        MemoryEngine::apply_touch(self, touch)
    }

    fn snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
    ) -> (Vec<Record>, Option<Vec<u8>>) {
        MemoryEngine::snapshot_chunk(self, after, max_records)
    }

    fn visit_snapshot_chunk(
        &self,
        after: Option<&[u8]>,
        max_records: usize,
        visit: &mut dyn FnMut(&RecordView<'_>),
    ) -> Option<Vec<u8>> {
        MemoryEngine::visit_snapshot_chunk(self, after, max_records, visit)
    }

    fn bucket_digests(&self) -> Vec<u64> {
        MemoryEngine::bucket_digests(self)
    }

    fn bucket_keys(&self, buckets: &[usize]) -> Vec<Vec<(Bytes, u64)>> {
        MemoryEngine::bucket_keys(self, buckets)
    }

    fn read_records(&self, keys: &[Bytes]) -> Vec<Record> {
        MemoryEngine::read_records(self, keys)
    }

    fn collect_tombstones(&self, deleted_before_ms: u64) -> usize {
        MemoryEngine::collect_tombstones(self, deleted_before_ms)
    }

    fn is_empty(&self) -> bool {
        self.holds_nothing()
    }

    fn room(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        MemoryEngine::room(self)
    }
}
