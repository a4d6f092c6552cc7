//! How peers exchange whole [`Message`](crate::replication::wire::Message)s: the
//! [`Transport`] trait and what it hands out (`connection`), [`TcpTransport`] (frames of
//! [`crate::replication::wire`] over TCP, or TLS on TCP, after the checks of
//! [`PeerSecurity`]: mutual TLS and the peer key's challenge-response of [`peer_auth`]),
//! [`InMemoryTransport`] (the same frames over channels, on an [`InMemoryNetwork`] that tests
//! can partition and heal) and [`FaultyTransport`] (blocks chosen addresses, for partition
//! tests of real processes). TCP (plain, keyed, mutual TLS) and in-memory pass one test
//! suite.

mod connection;
mod faulty;
mod memory;
pub mod peer_auth;
mod security;
mod tcp;

pub use connection::{
    Connection, Listener, MessageReceiver, MessageSender, Transport, TransportError,
};
pub use faulty::{FaultyTransport, TransportFaults};
pub use memory::{InMemoryNetwork, InMemoryTransport};
pub use peer_auth::{PeerKeyError, PeerKeys};
pub use security::{PeerRefusals, PeerSecurity, SecureError};
pub use tcp::TcpTransport;

#[cfg(test)]
mod tests;
