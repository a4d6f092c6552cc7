//! [`FaultyTransport`]: a wrapper around another transport that refuses and breaks outgoing
//! connections to the addresses a [`TransportFaults`] blocks, so that tests of real processes
//! can partition nodes through the node's hidden `--test-faults` endpoint.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::connection::{
    Connection, Listener, MessageReceiver, MessageSender, Transport, TransportError,
};
use crate::replication::wire::Message;

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
