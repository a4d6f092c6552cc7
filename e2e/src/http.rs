//! A minimal HTTP/1.1 client over TCP for store-node's session API and `/v1/status`, reached
//! through a [`crate::forward::Forwarder`].
//!
//! [`request`] opens one connection per request (`Connection: close`), so a Service forwarder
//! spreads consecutive requests over the ready pods. [`Connection`] keeps one connection open
//! for many requests: through a port-forward every new connection costs a stream set up by the
//! API server and the kubelet (about a second on a loaded machine), so checks that read many
//! sessions from one pod use it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on one request, connect to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response head or body accepted: far above anything store-node sends.
const MAX_RESPONSE: usize = 16 << 20;

/// A response: status code and body text.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body (UTF-8, lossily decoded).
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("body is not JSON (status {}): {}", self.status, self.body))
    }
}

/// Sends `method path` to `addr` on a new connection with an optional bearer `token` and JSON
/// `body`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Response> {
    bounded(method, path, async {
        let stream = connect(addr).await?;
        let mut stream = BufReader::new(stream);
        exchange(&mut stream, method, path, token, body, false).await
    })
    .await
}

/// One kept-alive connection to `addr` for many requests. A request that fails drops the
/// connection; the next one reconnects.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    /// A connection to `addr`, opened on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    /// Sends `method path` with an optional bearer `token` and JSON `body`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<Response> {
        let addr = self.addr;
        let slot = &mut self.stream;
        let result = bounded(method, path, async {
            if slot.is_none() {
                *slot = Some(BufReader::new(connect(addr).await?));
            }
            let stream = slot.as_mut().context("connection vanished")?;
            exchange(stream, method, path, token, body, true).await
        })
        .await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

async fn bounded<F>(method: &str, path: &str, work: F) -> anyhow::Result<Response>
where
    F: std::future::Future<Output = anyhow::Result<Response>>,
{
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("{method} {path}: no response within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {path}"))
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))
}

/// Writes one request and reads exactly one response from `stream`.
async fn exchange<S>(
    stream: &mut BufReader<S>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
    keep_alive: bool,
) -> anyhow::Result<Response>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let payload = match body {
        Some(body) => serde_json::to_vec(body)?,
        None => Vec::new(),
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: store-node\r\nConnection: {connection}\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    let writer = stream.get_mut();
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(&payload).await?;
    writer.flush().await?;
    read_response(stream).await
}

/// Reads one response: the head, then a body framed by Content-Length, chunked encoding, or
/// (without either) the end of the stream.
async fn read_response<R: AsyncBufRead + Unpin>(reader: &mut R) -> anyhow::Result<Response> {
    let status_line = read_line(reader).await?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let line = read_line(reader).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let parsed: usize = value
                    .parse()
                    .with_context(|| format!("bad Content-Length {value:?}"))?;
                length = Some(parsed);
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = match (chunked, length) {
        (true, _) => read_chunked(reader).await?,
        (false, Some(length)) => read_exact(reader, length).await?,
        (false, None) => {
            let mut body = Vec::new();
            reader
                .take(MAX_RESPONSE as u64)
                .read_to_end(&mut body)
                .await?;
            body
        }
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One CRLF-terminated line without its terminator; an early end of stream is an error.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_RESPONSE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 || line.last() != Some(&b'\n') {
        bail!(
            "connection closed in the middle of a response after {:?}",
            String::from_utf8_lossy(&line)
        );
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

async fn read_exact<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    length: usize,
) -> anyhow::Result<Vec<u8>> {
    if length > MAX_RESPONSE {
        bail!("response body of {length} bytes is larger than {MAX_RESPONSE}");
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .await
        .context("truncated body")?;
    Ok(body)
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader).await?;
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers end with an empty line.
            while !read_line(reader).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_RESPONSE {
            bail!("chunked body larger than {MAX_RESPONSE}");
        }
        body.extend(read_exact(reader, size).await?);
        if !read_line(reader).await?.is_empty() {
            bail!("chunk of {size} bytes not followed by CRLF");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse_all(raw: &[u8]) -> Vec<Response> {
        let mut reader = BufReader::new(raw);
        let mut responses = Vec::new();
        while !reader.fill_buf().await.unwrap().is_empty() {
            responses.push(read_response(&mut reader).await.unwrap());
        }
        responses
    }

    #[tokio::test]
    async fn reads_back_to_back_responses_framed_by_length_and_chunks() {
        let raw = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let responses = parse_all(raw).await;
        assert_eq!(
            responses,
            vec![
                Response {
                    status: 201,
                    body: "{}".into()
                },
                Response {
                    status: 200,
                    body: "abcde".into()
                },
                Response {
                    status: 404,
                    body: String::new()
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_body_without_framing_runs_to_the_end_of_the_stream() {
        let responses = parse_all(b"HTTP/1.1 200 OK\r\n\r\nplain text").await;
        assert_eq!(responses[0].body, "plain text");
    }

    #[tokio::test]
    async fn a_truncated_response_is_an_error() {
        let mut reader = BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..]);
        let error = read_response(&mut reader).await.unwrap_err();
        assert_eq!(format!("{error:#}"), "truncated body: early eof");
    }

    /// A kept-alive connection carries several requests; the server sees them on one socket.
    #[tokio::test]
    async fn a_connection_sends_many_requests_over_one_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = BufReader::new(socket);
            let mut paths = Vec::new();
            for _ in 0..3 {
                let request_line = read_line(&mut socket).await.unwrap();
                while !read_line(&mut socket).await.unwrap().is_empty() {}
                paths.push(request_line.split(' ').nth(1).unwrap().to_owned());
                socket
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong")
                    .await
                    .unwrap();
            }
            paths
        });
        let mut connection = Connection::new(addr);
        for path in ["/a", "/b", "/c"] {
            let response = connection.request("GET", path, None, None).await.unwrap();
            assert_eq!(response.body, "pong");
        }
        assert_eq!(server.await.unwrap(), ["/a", "/b", "/c"]);
    }
}
