//! The three namespaces of pub/sub: channels, patterns over channels, and shard channels.

/// What a subscription is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A channel (`SUBSCRIBE`, `PUBLISH`).
    Channel,
    /// A glob pattern over channels (`PSUBSCRIBE`).
    Pattern,
    /// A shard channel (`SSUBSCRIBE`, `SPUBLISH`): a namespace of its own, as in Redis; the
    /// cluster has no shards, so it reaches every node like a channel.
    Shard,
}

impl Kind {
    /// The (un)subscribe confirmation's name: `subscribe`, `psubscribe`, `ssubscribe`.
    pub fn subscribe_name(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    /// `unsubscribe`, `punsubscribe`, `sunsubscribe`.
    pub fn unsubscribe_name(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}
