//! Conversations compared with a real Redis: a blocking raw RESP connection ([`Conn`]) that
//! gives each reply's exact bytes, and [`against_both`], which runs one conversation against
//! the node under test and then, where Debian's `redis-server` is installed, against a real
//! Redis started on a free loopback port in the same run (stopped by its PID when done).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use store_node::protocol::decode::decode;

use super::command;

/// A blocking raw RESP connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    /// Connects to `address`, with a 10 s read timeout.
    pub fn open(address: SocketAddr) -> Conn {
        let stream = TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Sends one request.
    pub fn send(&mut self, args: &[&str]) {
        self.stream.write_all(&command(args)).expect("write");
    }

    /// The raw bytes of the next reply frame.
    pub fn reply(&mut self) -> String {
        loop {
            if let Some((_, used)) = decode(&self.buffer).expect("valid RESP") {
                let raw: Vec<u8> = self.buffer.drain(..used).collect();
                return String::from_utf8_lossy(&raw).into_owned();
            }
            let mut chunk = [0u8; 65536];
            let read = self.stream.read(&mut chunk).expect("read");
            assert!(read > 0, "connection closed while waiting for a reply");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Sends one request and returns the raw bytes of its reply.
    pub fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply()
    }
}

/// A real redis-server on a free loopback port, stopped (by its PID) when dropped.
pub struct RealRedis {
    child: Child,
    /// Where it listens.
    pub address: SocketAddr,
}

impl RealRedis {
    /// Starts one; `None` when redis-server is not installed or does not come up.
    pub fn start() -> Option<RealRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(address).is_ok() {
                return Some(RealRedis { child, address });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `conversation` against the node and, when installed, against redis-server.
pub fn against_both(node: SocketAddr, conversation: impl Fn(SocketAddr)) {
    conversation(node);
    match RealRedis::start() {
        Some(redis) => conversation(redis.address),
        None => eprintln!("redis-server not installed: compared with the expected bytes only"),
    }
}
