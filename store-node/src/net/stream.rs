//! What a RESP connection reads and writes: plain TCP or TLS over it ([`ClientStream`]), one
//! connection loop for both.

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// A client's byte stream.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin {
    /// Reads what has already arrived into `buf` without waiting; `WouldBlock` when nothing
    /// has.
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize>;
}

impl ClientStream for TcpStream {
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        self.try_read_buf(buf)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        // One poll: decrypted bytes already buffered, or records already in the socket. A
        // read is cancel-safe, and the next awaited read registers for readiness again.
        self.read_buf(buf)
            .now_or_never()
            .unwrap_or_else(|| Err(std::io::ErrorKind::WouldBlock.into()))
    }
}
