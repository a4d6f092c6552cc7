//! How peers exchange whole [`Message`]s: the [`Transport`] trait, [`TcpTransport`] (frames of
//! [`super::wire`] over TCP) and [`InMemoryTransport`] (the same frames over channels, on an
//! [`InMemoryNetwork`] that tests can partition and heal). Both pass one test suite.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{encode_frame, encode_frame_into, split_frame, Message, WireError};

/// Transport failures, each naming the step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Binding the listener failed.
    #[error("failed to listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Accepting a connection failed.
    #[error("failed to accept a peer connection: {0}")]
    Accept(String),
    /// Connecting failed.
    #[error("failed to connect to {address}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// Sending failed; the connection is unusable.
    #[error("failed to send a peer message: {0}")]
    Send(String),
    /// Receiving failed; the connection is unusable.
    #[error("failed to receive a peer message: {0}")]
    Receive(String),
    /// The bytes received are not a valid frame.
    #[error("invalid frame from peer: {0}")]
    Wire(WireError),
}

/// The sending half of a connection. Messages are queued (encoded) and then flushed, so
/// several messages queued at once can leave in one write.
pub trait MessageSender: Send {
    /// Encodes `message` behind the ones already queued; returns its size on the wire. Nothing
    /// is sent before [`MessageSender::flush`].
    fn queue(&mut self, message: &Message) -> Result<usize, TransportError>;

    /// Bytes queued and not flushed yet.
    fn queued(&self) -> usize;

    /// Sends everything queued, in order.
    fn flush(&mut self) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Sends one message (queue and flush); returns the bytes put on the wire.
    fn send(&mut self, message: Message) -> BoxFuture<'_, Result<usize, TransportError>> {
        Box::pin(async move {
            let len = self.queue(&message)?;
            self.flush().await?;
            Ok(len)
        })
    }
}

/// The receiving half of a connection.
pub trait MessageReceiver: Send {
    /// The next message and its size on the wire; `None` when the peer closed cleanly.
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<(Message, usize)>, TransportError>>;
}

/// An established connection.
pub struct Connection {
    /// Sending half.
    pub sender: Box<dyn MessageSender>,
    /// Receiving half.
    pub receiver: Box<dyn MessageReceiver>,
    /// The remote address as the transport sees it.
    pub remote_address: String,
}

/// Accepts incoming connections.
pub trait Listener: Send {
    /// The bound address (with the port chosen when 0 was asked).
    fn local_address(&self) -> String;
    /// The next incoming connection.
    fn accept(&mut self) -> BoxFuture<'_, Result<Connection, TransportError>>;
}

/// A way to reach peers.
pub trait Transport: Send + Sync + 'static {
    /// Binds a listener.
    fn listen(&self, address: &str) -> BoxFuture<'_, Result<Box<dyn Listener>, TransportError>>;
    /// Connects to a peer.
    fn connect<'a>(&'a self, address: &'a str)
        -> BoxFuture<'a, Result<Connection, TransportError>>;
}

/// Peer connections over TCP.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    max_frame: usize,
}

impl TcpTransport {
    /// A TCP transport refusing frames above `max_frame` bytes.
    pub fn new(max_frame: usize) -> TcpTransport {
        TcpTransport { max_frame }
    }
}

struct TcpListenerHandle {
    listener: TcpListener,
    address: String,
    max_frame: usize,
}

/// A sender keeps one buffer that every frame is encoded into, reused from write to write.
struct TcpSender {
    writer: OwnedWriteHalf,
    buffer: BytesMut,
    max_frame: usize,
}

/// What a link's send buffer starts with, and shrinks back to after a write of more than
/// [`SEND_BUFFER_KEEP`] (snapshot chunks and repairs can reach megabytes).
const SEND_BUFFER_INITIAL: usize = 64 * 1024;
const SEND_BUFFER_KEEP: usize = 4 << 20;

struct TcpReceiver {
    reader: OwnedReadHalf,
    buffer: BytesMut,
    max_frame: usize,
}

fn tcp_connection(stream: TcpStream, remote_address: String, max_frame: usize) -> Connection {
    // Batches are already coalesced; Nagle would only add latency to acks.
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    Connection {
        sender: Box::new(TcpSender {
            writer,
            buffer: BytesMut::with_capacity(SEND_BUFFER_INITIAL),
            max_frame,
        }),
        receiver: Box::new(TcpReceiver {
            reader,
            buffer: BytesMut::with_capacity(64 * 1024),
            max_frame,
        }),
        remote_address,
    }
}

impl MessageSender for TcpSender {
    fn queue(&mut self, message: &Message) -> Result<usize, TransportError> {
        encode_frame_into(message, self.max_frame, &mut self.buffer).map_err(TransportError::Wire)
    }

    fn queued(&self) -> usize {
        self.buffer.len()
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            if self.buffer.is_empty() {
                return Ok(());
            }
            let written = self.writer.write_all(&self.buffer).await;
            if self.buffer.capacity() > SEND_BUFFER_KEEP {
                self.buffer = BytesMut::with_capacity(SEND_BUFFER_INITIAL);
            } else {
                self.buffer.clear();
            }
            written.map_err(|error| TransportError::Send(error.to_string()))
        })
    }
}

impl MessageReceiver for TcpReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<(Message, usize)>, TransportError>> {
        Box::pin(async move {
            loop {
                let before = self.buffer.len();
                if let Some(message) =
                    split_frame(&mut self.buffer, self.max_frame).map_err(TransportError::Wire)?
                {
                    return Ok(Some((message, before - self.buffer.len())));
                }
                let read = self
                    .reader
                    .read_buf(&mut self.buffer)
                    .await
                    .map_err(|error| TransportError::Receive(error.to_string()))?;
                if read == 0 {
                    if self.buffer.is_empty() {
                        return Ok(None);
                    }
                    return Err(TransportError::Receive(
                        "connection closed in the middle of a frame".into(),
                    ));
                }
            }
        })
    }
}

impl Listener for TcpListenerHandle {
    fn local_address(&self) -> String {
        self.address.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let (stream, remote) = self
                .listener
                .accept()
                .await
                .map_err(|error| TransportError::Accept(error.to_string()))?;
            Ok(tcp_connection(stream, remote.to_string(), self.max_frame))
        })
    }
}

impl Transport for TcpTransport {
    fn listen(&self, address: &str) -> BoxFuture<'_, Result<Box<dyn Listener>, TransportError>> {
        let address = address.to_string();
        Box::pin(async move {
            let listener =
                TcpListener::bind(&address)
                    .await
                    .map_err(|error| TransportError::Listen {
                        address: address.clone(),
                        reason: error.to_string(),
                    })?;
            let bound = listener
                .local_addr()
                .map(|bound| bound.to_string())
                .map_err(|error| TransportError::Listen {
                    address: address.clone(),
                    reason: error.to_string(),
                })?;
            Ok(Box::new(TcpListenerHandle {
                listener,
                address: bound,
                max_frame: self.max_frame,
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            let stream =
                TcpStream::connect(address)
                    .await
                    .map_err(|error| TransportError::Connect {
                        address: address.to_string(),
                        reason: error.to_string(),
                    })?;
            Ok(tcp_connection(stream, address.to_string(), self.max_frame))
        })
    }
}

/// TEST ONLY: blocked peer addresses for [`FaultyTransport`] (partition tests of real
/// processes, driven by the node's hidden `--test-faults` endpoint).
#[derive(Default)]
pub struct TransportFaults {
    blocked: Mutex<HashSet<String>>,
    links: Mutex<Vec<(String, CancellationToken)>>,
}

impl std::fmt::Debug for TransportFaults {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TransportFaults")
            .field("blocked", &self.blocked())
            .finish_non_exhaustive()
    }
}

impl TransportFaults {
    /// Blocks exactly `addresses` (replacing the previous set): connecting to them fails and
    /// established outgoing connections to them break. An empty list heals.
    pub fn set_blocked(&self, addresses: &[String]) {
        let blocked: HashSet<String> = addresses.iter().cloned().collect();
        let mut links = self.links.lock();
        links.retain(|(address, token)| {
            if blocked.contains(address) {
                token.cancel();
            }
            !token.is_cancelled()
        });
        *self.blocked.lock() = blocked;
    }

    /// The blocked addresses.
    pub fn blocked(&self) -> Vec<String> {
        let mut blocked: Vec<String> = self.blocked.lock().iter().cloned().collect();
        blocked.sort();
        blocked
    }

    fn is_blocked(&self, address: &str) -> bool {
        self.blocked.lock().contains(address)
    }
}

/// TEST ONLY: a transport that refuses and breaks outgoing connections to blocked addresses.
/// Nodes of one side of a partition block the other side's addresses, and the other side
/// does the same, so every link across the cut goes down (an acceptor sees its dialer close).
pub struct FaultyTransport {
    inner: Arc<dyn Transport>,
    faults: Arc<TransportFaults>,
}

impl FaultyTransport {
    /// Wraps `inner` with the faults in `faults`.
    pub fn new(inner: Arc<dyn Transport>, faults: Arc<TransportFaults>) -> FaultyTransport {
        FaultyTransport { inner, faults }
    }
}

struct FaultySender {
    inner: Box<dyn MessageSender>,
    address: String,
    faults: Arc<TransportFaults>,
}

impl FaultySender {
    fn check(&self) -> Result<(), TransportError> {
        if self.faults.is_blocked(&self.address) {
            return Err(TransportError::Send(format!(
                "{} is blocked by a test fault",
                self.address
            )));
        }
        Ok(())
    }
}

impl MessageSender for FaultySender {
    fn queue(&mut self, message: &Message) -> Result<usize, TransportError> {
        self.check()?;
        self.inner.queue(message)
    }

    fn queued(&self) -> usize {
        self.inner.queued()
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.flush().await
        })
    }
}

struct FaultyReceiver {
    inner: Box<dyn MessageReceiver>,
    cut: CancellationToken,
}

impl MessageReceiver for FaultyReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<(Message, usize)>, TransportError>> {
        Box::pin(async move {
            tokio::select! {
                () = self.cut.cancelled() => {
                    Err(TransportError::Receive("blocked by a test fault".into()))
                }
                received = self.inner.recv() => received,
            }
        })
    }
}

impl Transport for FaultyTransport {
    fn listen(&self, address: &str) -> BoxFuture<'_, Result<Box<dyn Listener>, TransportError>> {
        self.inner.listen(address)
    }

    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            if self.faults.is_blocked(address) {
                return Err(TransportError::Connect {
                    address: address.to_string(),
                    reason: "blocked by a test fault".into(),
                });
            }
            let connection = self.inner.connect(address).await?;
            let cut = CancellationToken::new();
            self.faults
                .links
                .lock()
                .push((address.to_string(), cut.clone()));
            Ok(Connection {
                sender: Box::new(FaultySender {
                    inner: connection.sender,
                    address: address.to_string(),
                    faults: self.faults.clone(),
                }),
                receiver: Box::new(FaultyReceiver {
                    inner: connection.receiver,
                    cut,
                }),
                remote_address: connection.remote_address,
            })
        })
    }
}

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
            max_frame: super::wire::DEFAULT_MAX_FRAME,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::wire::{Hello, NodeState, PROTOCOL_VERSION};

    fn hello(name: &str) -> Message {
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster: "test".into(),
            node_name: name.into(),
            node_id: 1,
            advertise: String::new(),
            state: NodeState::Ready,
            has_data: false,
        })
    }

    /// Messages queued and flushed once, as a link's writer sends what it has queued.
    fn queued_messages() -> Vec<Message> {
        vec![
            Message::Ack { seq: 1 },
            Message::Heartbeat {
                state: NodeState::Ready,
                head: 9,
            },
            hello("queued"),
        ]
    }

    /// The suite every transport passes: a request/answer exchange, a large message, several
    /// messages queued and flushed at once, clean close, and a refused connection.
    async fn transport_suite(
        server: &dyn Transport,
        client: &dyn Transport,
        listen: &str,
        unused: &str,
    ) {
        let mut listener = server.listen(listen).await.expect("listen");
        let address = listener.local_address();
        let accepted = tokio::spawn(async move {
            let mut connection = listener.accept().await.expect("accept");
            let received = connection.receiver.recv().await.expect("server recv");
            connection
                .sender
                .send(hello("server"))
                .await
                .expect("server send");
            let big = connection.receiver.recv().await.expect("big");
            let mut queued = Vec::new();
            for _ in 0..queued_messages().len() {
                let message = connection.receiver.recv().await.expect("queued");
                queued.extend(message.map(|(message, _)| message));
            }
            (
                received.map(|(message, _)| message),
                big.map(|(message, _)| message),
                queued,
                connection,
            )
        });
        let mut connection = client.connect(&address).await.expect("connect");
        let sent = connection.sender.send(hello("client")).await.expect("send");
        assert!(sent > 8);
        let answer = connection
            .receiver
            .recv()
            .await
            .expect("recv")
            .map(|(message, _)| message);
        assert_eq!(answer, Some(hello("server")));
        let big = Message::Digest {
            buckets: vec![7; 100_000],
        };
        connection.sender.send(big.clone()).await.expect("send big");
        assert_eq!(connection.sender.queued(), 0);
        let mut queued_len = 0;
        for message in queued_messages() {
            queued_len += connection.sender.queue(&message).expect("queue");
        }
        assert_eq!(connection.sender.queued(), queued_len);
        connection.sender.flush().await.expect("flush");
        assert_eq!(connection.sender.queued(), 0);
        let (received, received_big, queued, server_connection) = accepted.await.expect("join");
        assert_eq!(received, Some(hello("client")));
        assert_eq!(received_big, Some(big));
        assert_eq!(queued, queued_messages());
        drop(server_connection);
        assert!(matches!(
            connection.receiver.recv().await,
            Ok(None) | Err(_)
        ));
        assert!(client.connect(unused).await.is_err());
    }

    #[tokio::test]
    async fn tcp_transport_passes_the_suite() {
        let transport = TcpTransport::new(super::super::wire::DEFAULT_MAX_FRAME);
        // A port that was just free, then released: connecting to it is refused.
        let unused = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map(|address| address.to_string())
            .unwrap_or_default();
        transport_suite(&transport, &transport, "127.0.0.1:0", &unused).await;
    }

    #[tokio::test]
    async fn in_memory_transport_passes_the_suite() {
        let network = InMemoryNetwork::new();
        transport_suite(
            &network.transport("a:1"),
            &network.transport("b:1"),
            "a:1",
            "nobody:1",
        )
        .await;
    }

    #[tokio::test]
    async fn partitions_break_connections_and_refuse_new_ones_until_healed() {
        let network = InMemoryNetwork::new();
        let server = network.transport("a:1");
        let client = network.transport("b:1");
        let mut listener = server.listen("a:1").await.expect("listen");
        let mut connection = client.connect("a:1").await.expect("connect");
        let mut accepted = listener.accept().await.expect("accept");
        network.partition(&["a:1"], &["b:1"]);
        assert!(connection.sender.send(hello("b")).await.is_err());
        assert!(accepted.receiver.recv().await.is_err());
        assert!(client.connect("a:1").await.is_err());
        network.heal();
        let mut connection = client.connect("a:1").await.expect("reconnect");
        let mut accepted = listener.accept().await.expect("accept again");
        connection.sender.send(hello("b")).await.expect("send");
        assert_eq!(
            accepted
                .receiver
                .recv()
                .await
                .ok()
                .flatten()
                .map(|(message, _)| message),
            Some(hello("b"))
        );
    }
}
