//! Limits on what clients may make the node hold, settable by flag and `CONFIG SET`: the
//! request limits after AUTH (`proto-max-bulk-len`, `proto-max-multibulk-len`), the query
//! buffer per client (`client-query-buffer-limit`), and a cap on the input and output buffers
//! of all clients together (`maxmemory-clients`) that closes the clients holding the most
//! first, as Redis's client eviction does.
//!
//! Each connection registers here ([`ClientLimits::register`]) and reports its buffers'
//! size when it changes; the sum is the node's client memory (`INFO` `mem_clients_normal`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MemoryOrPercent};
use crate::protocol::Limits;

/// One registered connection.
#[derive(Debug)]
struct Slot {
    address: String,
    bytes: AtomicU64,
    close: CancellationToken,
}

/// The limits and the registry of client buffers.
#[derive(Debug)]
pub struct ClientLimits {
    proto_max_bulk_len: AtomicU64,
    proto_max_multibulk_len: AtomicU64,
    query_buffer_limit: AtomicU64,
    maxmemory_clients: AtomicU64,
    clients: Mutex<HashMap<u64, Arc<Slot>>>,
    total: AtomicU64,
    evicted: AtomicU64,
    query_buffer_disconnections: AtomicU64,
}

/// Bit set in the stored `maxmemory-clients` when it is a percentage.
const PERCENT: u64 = 1 << 63;

fn encode(value: MemoryOrPercent) -> u64 {
    match value {
        MemoryOrPercent::Bytes(bytes) => bytes & !PERCENT,
        MemoryOrPercent::Percent(percent) => PERCENT | percent,
    }
}

impl ClientLimits {
    /// The limits of the flags.
    pub fn new(config: &Config) -> ClientLimits {
        ClientLimits {
            proto_max_bulk_len: AtomicU64::new(config.proto_max_bulk_len),
            proto_max_multibulk_len: AtomicU64::new(config.proto_max_multibulk_len),
            query_buffer_limit: AtomicU64::new(config.client_query_buffer_limit),
            maxmemory_clients: AtomicU64::new(encode(config.maxmemory_clients)),
            clients: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            query_buffer_disconnections: AtomicU64::new(0),
        }
    }

    /// The parser limits of an authenticated connection now.
    pub fn request_limits(&self) -> Limits {
        let clamp = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        Limits {
            max_bulk_len: clamp(self.proto_max_bulk_len.load(Ordering::Relaxed)),
            max_args: clamp(self.proto_max_multibulk_len.load(Ordering::Relaxed)),
            ..Limits::default()
        }
    }

    /// `proto-max-bulk-len`.
    pub fn proto_max_bulk_len(&self) -> u64 {
        self.proto_max_bulk_len.load(Ordering::Relaxed)
    }

    /// Sets `proto-max-bulk-len`.
    pub fn set_proto_max_bulk_len(&self, bytes: u64) {
        self.proto_max_bulk_len.store(bytes, Ordering::Relaxed);
    }

    /// `proto-max-multibulk-len`.
    pub fn proto_max_multibulk_len(&self) -> u64 {
        self.proto_max_multibulk_len.load(Ordering::Relaxed)
    }

    /// Sets `proto-max-multibulk-len`.
    pub fn set_proto_max_multibulk_len(&self, count: u64) {
        self.proto_max_multibulk_len.store(count, Ordering::Relaxed);
    }

    /// `client-query-buffer-limit`.
    pub fn query_buffer_limit(&self) -> u64 {
        self.query_buffer_limit.load(Ordering::Relaxed)
    }

    /// Sets `client-query-buffer-limit`.
    pub fn set_query_buffer_limit(&self, bytes: u64) {
        self.query_buffer_limit.store(bytes, Ordering::Relaxed);
    }

    /// `maxmemory-clients` as set.
    pub fn maxmemory_clients(&self) -> MemoryOrPercent {
        let stored = self.maxmemory_clients.load(Ordering::Relaxed);
        if stored & PERCENT != 0 {
            MemoryOrPercent::Percent(stored & !PERCENT)
        } else {
            MemoryOrPercent::Bytes(stored)
        }
    }

    /// Sets `maxmemory-clients`.
    pub fn set_maxmemory_clients(&self, value: MemoryOrPercent) {
        self.maxmemory_clients
            .store(encode(value), Ordering::Relaxed);
    }

    /// The cap on all clients' buffers in bytes for a node limited to `memory_limit` bytes; 0 =
    /// no cap (a percentage of an unlimited node is no cap).
    pub fn client_memory_cap(&self, memory_limit: u64) -> u64 {
        match self.maxmemory_clients() {
            MemoryOrPercent::Bytes(bytes) => bytes,
            MemoryOrPercent::Percent(percent) => memory_limit / 100 * percent,
        }
    }

    /// Bytes held by all clients' buffers.
    pub fn client_memory(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Clients closed by the `maxmemory-clients` cap.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Clients closed for exceeding `client-query-buffer-limit`.
    pub fn query_buffer_disconnections(&self) -> u64 {
        self.query_buffer_disconnections.load(Ordering::Relaxed)
    }

    /// Counts a client closed for its query buffer.
    pub fn count_query_buffer_disconnection(&self) {
        self.query_buffer_disconnections
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a connection; `close` is cancelled when the cap picks it. The handle
    /// unregisters it when dropped.
    pub fn register(&self, id: u64, address: String, close: CancellationToken) -> ClientHandle<'_> {
        let slot = Arc::new(Slot {
            address,
            bytes: AtomicU64::new(0),
            close,
        });
        self.clients.lock().insert(id, slot.clone());
        ClientHandle {
            limits: self,
            id,
            slot,
        }
    }

    /// Closes the clients holding the most until the rest fit under `cap` (the ones already
    /// closing count no more). Returns how many it closed.
    fn evict(&self, cap: u64) -> usize {
        let mut slots: Vec<(u64, Arc<Slot>)> = self
            .clients
            .lock()
            .iter()
            .filter(|(_, slot)| !slot.close.is_cancelled())
            .map(|(&id, slot)| (id, slot.clone()))
            .collect();
        slots.sort_by_key(|(_, slot)| std::cmp::Reverse(slot.bytes.load(Ordering::Relaxed)));
        let mut total: u64 = slots
            .iter()
            .map(|(_, slot)| slot.bytes.load(Ordering::Relaxed))
            .sum();
        let mut closed = 0;
        for (id, slot) in slots {
            if total <= cap {
                break;
            }
            let bytes = slot.bytes.load(Ordering::Relaxed);
            total = total.saturating_sub(bytes);
            slot.close.cancel();
            closed += 1;
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                client = id,
                address = %slot.address,
                buffer_bytes = bytes,
                cap,
                "closing client: clients' buffers are above maxmemory-clients"
            );
        }
        closed
    }
}

/// A connection's registration.
#[derive(Debug)]
pub struct ClientHandle<'a> {
    limits: &'a ClientLimits,
    id: u64,
    slot: Arc<Slot>,
}

impl ClientHandle<'_> {
    /// Reports the connection's buffers now hold `bytes`; when all clients together exceed
    /// the cap for a node limited to `memory_limit`, closes the biggest. Cheap when nothing
    /// changed.
    pub fn update(&self, bytes: u64, memory_limit: u64) {
        // Read before writing: the usual call changes nothing, and a swap would take the
        // cache line for writing (and lock the bus) every time.
        if self.slot.bytes.load(Ordering::Relaxed) == bytes {
            return;
        }
        let previous = self.slot.bytes.swap(bytes, Ordering::Relaxed);
        if previous == bytes {
            return;
        }
        let total = if bytes > previous {
            self.limits
                .total
                .fetch_add(bytes - previous, Ordering::Relaxed)
                + (bytes - previous)
        } else {
            self.limits
                .total
                .fetch_sub(previous - bytes, Ordering::Relaxed)
                - (previous - bytes)
        };
        if bytes > previous {
            let cap = self.limits.client_memory_cap(memory_limit);
            if cap > 0 && total > cap {
                self.limits.evict(cap);
            }
        }
    }
}

impl Drop for ClientHandle<'_> {
    fn drop(&mut self) {
        self.limits.clients.lock().remove(&self.id);
        let bytes = self.slot.bytes.swap(0, Ordering::Relaxed);
        self.limits.total.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(cap: MemoryOrPercent) -> ClientLimits {
        let mut config = Config::for_tests();
        config.maxmemory_clients = cap;
        ClientLimits::new(&config)
    }

    #[test]
    fn the_biggest_clients_are_closed_first() {
        let limits = limits(MemoryOrPercent::Bytes(1000));
        let tokens: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        let handles: Vec<ClientHandle<'_>> = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| limits.register(id as u64, format!("client-{id}"), token.clone()))
            .collect();
        handles[0].update(300, 0);
        handles[1].update(600, 0);
        assert_eq!(limits.client_memory(), 900);
        assert!(tokens.iter().all(|token| !token.is_cancelled()));
        handles[2].update(200, 0);
        assert!(tokens[1].is_cancelled(), "600 bytes: the biggest");
        assert!(!tokens[0].is_cancelled() && !tokens[2].is_cancelled());
        assert_eq!(limits.evicted(), 1);
        drop(handles);
        assert_eq!(limits.client_memory(), 0);
    }

    #[test]
    fn a_percentage_is_of_the_memory_limit() {
        let limits = limits(MemoryOrPercent::Percent(25));
        assert_eq!(limits.client_memory_cap(1000), 250);
        assert_eq!(limits.client_memory_cap(0), 0, "no limit, no cap");
        let token = CancellationToken::new();
        let handle = limits.register(1, "one".into(), token.clone());
        handle.update(300, 0);
        assert!(!token.is_cancelled());
        handle.update(301, 1000);
        assert!(token.is_cancelled());
    }
}
