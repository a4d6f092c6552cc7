//! What every transport provides: a [`Transport`] binds [`Listener`]s and dials
//! [`Connection`]s, whose halves send ([`MessageSender`]) and receive ([`MessageReceiver`])
//! whole peer messages; [`TransportError`] names the step that failed.

use futures::future::BoxFuture;

use crate::replication::wire::{Message, WireError};

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
