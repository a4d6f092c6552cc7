//! Peer links. Every node dials every discovered peer, so each pair of nodes has two links, one
//! per direction: the dialer ([`outbound`]) pushes its op-log and drives snapshots and
//! anti-entropy rounds, the acceptor ([`inbound`]) applies and answers. Both open with the
//! [`handshake`] and send through an [`outbox`], whose writer task owns the socket so that
//! neither end ever stops reading while it waits to send. [`error`] says why a link ended;
//! [`publish`] carries `PUBLISH` to every peer.

pub(crate) mod error;
pub(crate) mod handshake;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod outbox;
pub mod publish;
