//! [`TcpTransport`]: peer messages as frames of [`crate::replication::wire`] over TCP, or over
//! TLS on TCP, after the checks of [`PeerSecurity`]; one reusable encode buffer per sender so
//! that queued messages leave in one write.
//!
//! The listener accepts in a task of its own and runs each connection's checks in a task per
//! connection, handing over only connections that passed them: a client that connects and
//! never completes a handshake holds up nobody.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::connection::{
    Connection, Listener, MessageReceiver, MessageSender, Transport, TransportError,
};
use super::security::{PeerSecurity, Secured};
use crate::replication::wire::{encode_frame_into, split_frame, Message};

/// Most connections in their checks at once; more are closed at once (a flood of
/// connections that never finish a handshake must not exhaust memory).
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Peer connections over TCP (and TLS when configured).
#[derive(Debug, Clone)]
pub struct TcpTransport {
    max_frame: usize,
    security: PeerSecurity,
}

impl TcpTransport {
    /// A TCP transport refusing frames above `max_frame` bytes, authenticating nobody.
    pub fn new(max_frame: usize) -> TcpTransport {
        TcpTransport::secured(max_frame, PeerSecurity::default())
    }

    /// A TCP transport whose connections pass `security`'s checks before any message.
    pub fn secured(max_frame: usize, security: PeerSecurity) -> TcpTransport {
        TcpTransport {
            max_frame,
            security,
        }
    }
}

struct TcpListenerHandle {
    address: String,
    ready: mpsc::Receiver<Result<Connection, TransportError>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for TcpListenerHandle {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// A sender keeps one buffer that every frame is encoded into, reused from write to write.
struct TcpSender<W> {
    writer: W,
    buffer: BytesMut,
    max_frame: usize,
}

/// What a link's send buffer starts with, and shrinks back to after a write of more than
/// [`SEND_BUFFER_KEEP`] (snapshot chunks and repairs can reach megabytes).
const SEND_BUFFER_INITIAL: usize = 64 * 1024;
const SEND_BUFFER_KEEP: usize = 4 << 20;

struct TcpReceiver<R> {
    reader: R,
    buffer: BytesMut,
    max_frame: usize,
}

fn halves<R, W>(reader: R, writer: W, remote_address: String, max_frame: usize) -> Connection
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
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

fn connection(secured: Secured, remote_address: String, max_frame: usize) -> Connection {
    match secured {
        Secured::Plain(stream) => {
            let (reader, writer) = stream.into_split();
            halves(reader, writer, remote_address, max_frame)
        }
        Secured::Accepted(stream) => {
            let (reader, writer) = tokio::io::split(*stream);
            halves(reader, writer, remote_address, max_frame)
        }
        Secured::Dialed(stream) => {
            let (reader, writer) = tokio::io::split(*stream);
            halves(reader, writer, remote_address, max_frame)
        }
    }
}

impl<W: AsyncWrite + Unpin + Send> MessageSender for TcpSender<W> {
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
            let mut written = self.writer.write_all(&self.buffer).await;
            if written.is_ok() {
                // TLS holds what it encrypted until flushed.
                written = self.writer.flush().await;
            }
            if self.buffer.capacity() > SEND_BUFFER_KEEP {
                self.buffer = BytesMut::with_capacity(SEND_BUFFER_INITIAL);
            } else {
                self.buffer.clear();
            }
            written.map_err(|error| TransportError::Send(error.to_string()))
        })
    }
}

impl<R: AsyncRead + Unpin + Send> MessageReceiver for TcpReceiver<R> {
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
            self.ready
                .recv()
                .await
                .unwrap_or_else(|| Err(TransportError::Accept("the listener stopped".into())))
        })
    }
}

/// Accepts until the handle is dropped, checking each connection in a task of its own.
async fn accept_loop(
    listener: TcpListener,
    ready: mpsc::Sender<Result<Connection, TransportError>>,
    security: PeerSecurity,
    max_frame: usize,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            () = ready.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                if ready
                    .send(Err(TransportError::Accept(error.to_string())))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        // Batches are already coalesced; Nagle would only add latency to acks.
        let _ = stream.set_nodelay(true);
        if !security.enabled() {
            let connection = connection(Secured::Plain(stream), remote.to_string(), max_frame);
            if ready.send(Ok(connection)).await.is_err() {
                return;
            }
            continue;
        }
        if pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_HANDSHAKES {
            pending.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%remote, "peer connection dropped: too many handshakes in progress");
            continue;
        }
        let (security, ready, pending) = (security.clone(), ready.clone(), pending.clone());
        tokio::spawn(async move {
            let remote = remote.to_string();
            let secured = security.accept(stream, &remote).await;
            pending.fetch_sub(1, Ordering::Relaxed);
            if let Some(secured) = secured {
                let _ = ready.send(Ok(connection(secured, remote, max_frame))).await;
            }
        });
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
            let (sender, ready) = mpsc::channel(64);
            let accepting = tokio::spawn(accept_loop(
                listener,
                sender,
                self.security.clone(),
                self.max_frame,
            ));
            Ok(Box::new(TcpListenerHandle {
                address: bound,
                ready,
                accepting,
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            let failed = |reason: String| TransportError::Connect {
                address: address.to_string(),
                reason,
            };
            let stream = TcpStream::connect(address)
                .await
                .map_err(|error| failed(error.to_string()))?;
            let _ = stream.set_nodelay(true);
            let secured = self
                .security
                .dial(stream, address)
                .await
                .map_err(|error| failed(error.to_string()))?;
            Ok(connection(secured, address.to_string(), self.max_frame))
        })
    }
}
