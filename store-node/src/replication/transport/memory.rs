//! [`InMemoryTransport`]: the same frames as TCP over channels, between the nodes of one
//! [`InMemoryNetwork`] that tests can partition and heal, so that multi-node scenarios run in
//! one process, deterministic and fast.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::{
    Connection, Listener, MessageReceiver, MessageSender, Transport, TransportError,
};
use crate::replication::wire::{encode_frame, split_frame, Message, DEFAULT_MAX_FRAME};

#[derive(Default)]
struct NetworkInner {
    listeners: HashMap<String, mpsc::Sender<Connection>>,
    blocked: HashSet<(String, String)>,
    connections: Vec<(String, String, CancellationToken)>,
    next_port: u16,
}

/// A simulated network of in-memory nodes, each named by its address, with injectable
/// partitions: a partitioned pair cannot connect and its existing connections break.
#[derive(Clone, Default)]
pub struct InMemoryNetwork {
    inner: Arc<Mutex<NetworkInner>>,
}

impl InMemoryNetwork {
    /// An empty network.
    pub fn new() -> InMemoryNetwork {
        InMemoryNetwork::default()
    }

    /// The transport of the node at `local_address`.
    pub fn transport(&self, local_address: &str) -> InMemoryTransport {
        InMemoryTransport {
            network: self.clone(),
            local: local_address.to_string(),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Cuts every node of `one` off from every node of `other`, both ways.
    pub fn partition(&self, one: &[&str], other: &[&str]) {
        let mut inner = self.inner.lock();
        for a in one {
            for b in other {
                inner.blocked.insert((a.to_string(), b.to_string()));
                inner.blocked.insert((b.to_string(), a.to_string()));
            }
        }
        let NetworkInner {
            blocked,
            connections,
            ..
        } = &mut *inner;
        connections.retain(|(a, b, token)| {
            if blocked.contains(&(a.clone(), b.clone())) {
                token.cancel();
            }
            !token.is_cancelled()
        });
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.inner.lock().blocked.clear();
    }
}

/// One node's view of an [`InMemoryNetwork`].
#[derive(Clone)]
pub struct InMemoryTransport {
    network: InMemoryNetwork,
    local: String,
    max_frame: usize,
}

struct MemoryListener {
    address: String,
    incoming: mpsc::Receiver<Connection>,
    network: InMemoryNetwork,
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        self.network.inner.lock().listeners.remove(&self.address);
    }
}

struct MemorySender {
    outgoing: mpsc::Sender<Bytes>,
    /// Encoded frames not flushed yet.
    queue: Vec<Bytes>,
    broken: CancellationToken,
    max_frame: usize,
}

struct MemoryReceiver {
    incoming: mpsc::Receiver<Bytes>,
    broken: CancellationToken,
    max_frame: usize,
}

impl MessageSender for MemorySender {
    fn queue(&mut self, message: &Message) -> Result<usize, TransportError> {
        let frame = encode_frame(message, self.max_frame).map_err(TransportError::Wire)?;
        let len = frame.len();
        self.queue.push(frame);
        Ok(len)
    }

    fn queued(&self) -> usize {
        self.queue.iter().map(Bytes::len).sum()
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            for frame in std::mem::take(&mut self.queue) {
                if self.broken.is_cancelled() {
                    return Err(TransportError::Send("network partitioned".into()));
                }
                tokio::select! {
                    sent = self.outgoing.send(frame) => sent.map_err(|_| TransportError::Send("connection closed".into()))?,
                    () = self.broken.cancelled() => return Err(TransportError::Send("network partitioned".into())),
                }
            }
            Ok(())
        })
    }
}

impl MessageReceiver for MemoryReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<(Message, usize)>, TransportError>> {
        Box::pin(async move {
            let frame = tokio::select! {
                frame = self.incoming.recv() => frame,
                () = self.broken.cancelled() => return Err(TransportError::Receive("network partitioned".into())),
            };
            let Some(frame) = frame else {
                return Ok(None);
            };
            let len = frame.len();
            let mut buffer = BytesMut::from(&frame[..]);
            match split_frame(&mut buffer, self.max_frame).map_err(TransportError::Wire)? {
                Some(message) => Ok(Some((message, len))),
                None => Err(TransportError::Receive("incomplete frame".into())),
            }
        })
    }
}

impl Listener for MemoryListener {
    fn local_address(&self) -> String {
        self.address.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            self.incoming
                .recv()
                .await
                .ok_or_else(|| TransportError::Accept("network gone".into()))
        })
    }
}

impl Transport for InMemoryTransport {
    fn listen(&self, address: &str) -> BoxFuture<'_, Result<Box<dyn Listener>, TransportError>> {
        let mut address = address.to_string();
        Box::pin(async move {
            let mut inner = self.network.inner.lock();
            if let Some(host) = address.strip_suffix(":0") {
                inner.next_port += 1;
                address = format!("{host}:{}", 40_000 + inner.next_port);
            }
            if inner.listeners.contains_key(&address) {
                return Err(TransportError::Listen {
                    address,
                    reason: "address in use".into(),
                });
            }
            let (sender, incoming) = mpsc::channel(64);
            inner.listeners.insert(address.clone(), sender);
            Ok(Box::new(MemoryListener {
                address,
                incoming,
                network: self.network.clone(),
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            let refused = |reason: &str| TransportError::Connect {
                address: address.to_string(),
                reason: reason.to_string(),
            };
            let (listener, broken) = {
                let mut inner = self.network.inner.lock();
                if inner
                    .blocked
                    .contains(&(self.local.clone(), address.to_string()))
                {
                    return Err(refused("network partitioned"));
                }
                let listener = inner
                    .listeners
                    .get(address)
                    .cloned()
                    .ok_or_else(|| refused("connection refused"))?;
                let broken = CancellationToken::new();
                inner
                    .connections
                    .push((self.local.clone(), address.to_string(), broken.clone()));
                (listener, broken)
            };
            let (to_server, server_incoming) = mpsc::channel(256);
            let (to_client, client_incoming) = mpsc::channel(256);
            let server_side = Connection {
                sender: Box::new(MemorySender {
                    outgoing: to_client,
                    queue: Vec::new(),
                    broken: broken.clone(),
                    max_frame: self.max_frame,
                }),
                receiver: Box::new(MemoryReceiver {
                    incoming: server_incoming,
                    broken: broken.clone(),
                    max_frame: self.max_frame,
                }),
                remote_address: self.local.clone(),
            };
            listener
                .send(server_side)
                .await
                .map_err(|_| refused("connection refused"))?;
            Ok(Connection {
                sender: Box::new(MemorySender {
                    outgoing: to_server,
                    queue: Vec::new(),
                    broken: broken.clone(),
                    max_frame: self.max_frame,
                }),
                receiver: Box::new(MemoryReceiver {
                    incoming: client_incoming,
                    broken,
                    max_frame: self.max_frame,
                }),
                remote_address: address.to_string(),
            })
        })
    }
}
