//! store-node library.
