//! What a subscribed RESP connection does besides its requests: writes out the messages
//! published to it, in order with its replies, and drops its subscriptions when it ends.

use bytes::BytesMut;

use crate::commands::ClientState;
use crate::node::NodeState;

/// Moves the messages published to a subscribed connection into its output, so they go out
/// before the replies of the requests that follow; returns whether the connection is over its
/// output buffer limit and must close.
pub(super) fn drain_messages(client: &ClientState, output: &mut BytesMut) -> bool {
    client
        .subscriber
        .as_ref()
        .is_some_and(|subscriber| subscriber.drain_into(output))
}

/// Resolves when a message was published to the connection; never without a subscriber.
pub(super) async fn wait_for_messages(subscriber: Option<&crate::pubsub::Subscriber>) {
    match subscriber {
        Some(subscriber) => subscriber.ready().await,
        None => std::future::pending().await,
    }
}

/// Drops a connection's subscriptions when it ends, however it ends.
pub(super) struct Unsubscribe<'a> {
    pub(super) state: &'a NodeState,
    pub(super) client: u64,
}

impl Drop for Unsubscribe<'_> {
    fn drop(&mut self) {
        self.state.pubsub.remove_client(self.client);
    }
}
