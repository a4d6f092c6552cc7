//! [`TcpTransport`]: peer messages as frames of [`crate::replication::wire`] over TCP, with
//! one reusable encode buffer per sender so that queued messages leave in one write.

use bytes::BytesMut;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::connection::{
    Connection, Listener, MessageReceiver, MessageSender, Transport, TransportError,
};
use crate::replication::wire::{encode_frame_into, split_frame, Message};

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
