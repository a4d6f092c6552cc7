//! The bounds a SessionCluster spec must keep, as CEL rules, and the words that explain them.
//! The CRD's `x-kubernetes-validations` (`types.rs`) and the operator's own `validate` both use
//! these, so the API server and the operator (whose check matters when the installed CRD is older
//! than the operator) refuse a spec with the same message.
//!
//! Every rule is CEL rather than a schema keyword (`minimum`, `pattern`): the schema's own
//! messages ("should be greater than or equal to 1", "should match '^([0-9]+...'") say neither
//! why nor what to write instead, and a schema failure makes the API server skip every CEL rule
//! with a second, generic error.

/// Fewest nodes a cluster may ask for.
pub const MIN_REPLICAS: i32 = 1;
/// Most nodes a cluster may ask for.
pub const MAX_REPLICAS: i32 = 99;
/// The rule of [`MIN_REPLICAS`] on `spec.replicas`.
pub const REPLICAS_MIN_RULE: &str = "self >= 1";
/// Why `spec.replicas` below [`MIN_REPLICAS`] is refused.
pub const REPLICAS_MIN_MESSAGE: &str = "replicas must be at least 1: a SessionCluster cannot be scaled to zero (that would drop every session); to stop it, set paused: true or delete the SessionCluster";
/// The rule of [`MAX_REPLICAS`] on `spec.replicas`.
pub const REPLICAS_MAX_RULE: &str = "self <= 99";
/// Why `spec.replicas` above [`MAX_REPLICAS`] is refused.
pub const REPLICAS_MAX_MESSAGE: &str = "replicas must be at most 99: every node holds every session and replicates every write to every other node, so more nodes add replication traffic but no room for sessions";

/// The smallest `resources.limits.memory`, as written in a manifest.
pub const MIN_MEMORY: &str = "64Mi";
/// [`MIN_MEMORY`] in bytes.
pub const MIN_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// The rule of [`MIN_MEMORY`] on `spec.resources` (whose `limits.memory` is a bounded string: the
/// API server refuses a quantity rule on a value of unknown size as too costly). A limit that is
/// not a quantity is left to [`MEMORY_QUANTITY_RULE`].
pub const MEMORY_FLOOR_RULE: &str = "!has(self.limits) || !has(self.limits.memory) || !isQuantity(self.limits.memory) || quantity(self.limits.memory).compareTo(quantity('64Mi')) >= 0";
/// Why a memory limit below [`MIN_MEMORY`] is refused.
pub const MEMORY_FLOOR_MESSAGE: &str = "resources.limits.memory must be at least 64Mi: a node needs about 20Mi for itself (the process, connection and replication buffers) before it holds a single session, and with less the kernel kills it (or cannot even start its pod) before it can refuse a write. Use e.g. memory: 256Mi";
/// The rule that the memory limit on `spec.resources` is a quantity.
pub const MEMORY_QUANTITY_RULE: &str =
    "!has(self.limits) || !has(self.limits.memory) || isQuantity(self.limits.memory)";
/// Why a memory limit that is not a quantity is refused.
pub const MEMORY_QUANTITY_MESSAGE: &str =
    "resources.limits.memory must be a Kubernetes quantity such as 256Mi or 1Gi";

/// The rule on `spec.memory.highWatermark`.
pub const HIGH_WATERMARK_RULE: &str = "self > 0.0 && self <= 0.95";
/// Why a high watermark outside (0, 0.95] is refused.
pub const HIGH_WATERMARK_MESSAGE: &str = "memory.highWatermark must be above 0 and at most 0.95: it is the fraction of resources.limits.memory above which a node refuses writes (or evicts), and the rest of the limit is what the node needs for itself and for bursts, e.g. highWatermark: 0.8";
/// The rule on `spec.memory.lowWatermark`.
pub const LOW_WATERMARK_RULE: &str = "self > 0.0";
/// Why a low watermark of 0 or below is refused.
pub const LOW_WATERMARK_MESSAGE: &str = "memory.lowWatermark must be above 0: the memory alarm clears when a node falls below this fraction of resources.limits.memory, e.g. lowWatermark: 0.7";
/// The rule on `spec.memory` that orders the watermarks.
pub const WATERMARK_ORDER_RULE: &str = "self.lowWatermark < self.highWatermark";
/// Why watermarks out of order are refused.
pub const WATERMARK_ORDER_MESSAGE: &str = "memory.lowWatermark must be below memory.highWatermark (the alarm raises above high and clears below low), e.g. lowWatermark: 0.7 with highWatermark: 0.8";

/// A Go-style duration: `30m`, `1h30m`, `45s`, `100ms`, `1.5h`.
pub const DURATION_REGEX: &str = "^([0-9]+([.][0-9]+)?(ms|s|m|h))+$";
/// The rule that a string field is a duration.
pub const DURATION_RULE: &str = "self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')";

/// Why a field that must be a duration was refused; `field` as in the manifest
/// (`sessions.defaultTimeout`).
pub fn duration_message(field: &str) -> String {
    format!("{field} must be a duration such as 30m, 1h30m or 45s")
}

/// [`duration_message`] of `sessions.defaultTimeout`.
pub const DEFAULT_TIMEOUT_DURATION_MESSAGE: &str =
    "sessions.defaultTimeout must be a duration such as 30m, 1h30m or 45s";
/// [`duration_message`] of `sessions.maxTimeout`.
pub const MAX_TIMEOUT_DURATION_MESSAGE: &str =
    "sessions.maxTimeout must be a duration such as 30m, 1h30m or 45s";
/// [`duration_message`] of `sessions.cleanupInterval`.
pub const CLEANUP_INTERVAL_DURATION_MESSAGE: &str =
    "sessions.cleanupInterval must be a duration such as 30m, 1h30m or 45s";
/// [`duration_message`] of `shutdownTimeout`.
pub const SHUTDOWN_TIMEOUT_DURATION_MESSAGE: &str =
    "shutdownTimeout must be a duration such as 30m, 1h30m or 45s";
/// [`duration_message`] of `monitoring.interval`.
pub const MONITORING_INTERVAL_DURATION_MESSAGE: &str =
    "monitoring.interval must be a duration such as 30m, 1h30m or 45s";

/// The rule that `sessions.defaultTimeout` is at least a second (a non-duration is left to
/// [`DURATION_RULE`], so it gets one message).
pub const DEFAULT_TIMEOUT_MIN_RULE: &str =
    "!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self) >= duration('1s')";
/// Why a shorter `sessions.defaultTimeout` is refused.
pub const DEFAULT_TIMEOUT_MIN_MESSAGE: &str = "sessions.defaultTimeout must be at least 1s";
/// The rule on the range of `sessions.cleanupInterval`.
pub const CLEANUP_INTERVAL_RANGE_RULE: &str = "!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('10ms') && duration(self) <= duration('1m'))";
/// Why a `sessions.cleanupInterval` out of range is refused.
pub const CLEANUP_INTERVAL_RANGE_MESSAGE: &str =
    "sessions.cleanupInterval must be between 10ms and 1m";
/// The rule on the range of `shutdownTimeout`.
pub const SHUTDOWN_TIMEOUT_RANGE_RULE: &str = "!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('10m'))";
/// Why a `shutdownTimeout` out of range is refused.
pub const SHUTDOWN_TIMEOUT_RANGE_MESSAGE: &str = "shutdownTimeout must be between 1s and 10m";
/// The rule on `spec.sessions` that the largest timeout covers the default one.
pub const MAX_TIMEOUT_ORDER_RULE: &str = "!self.maxTimeout.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.defaultTimeout.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.maxTimeout) >= duration(self.defaultTimeout)";
/// Why a `sessions.maxTimeout` below `sessions.defaultTimeout` is refused.
pub const MAX_TIMEOUT_ORDER_MESSAGE: &str = "sessions.maxTimeout must be at least sessions.defaultTimeout: raise maxTimeout or lower defaultTimeout";

/// The rule on `spec.progressDeadlineSeconds`.
pub const PROGRESS_DEADLINE_RULE: &str = "self >= 10";
/// Why a progress deadline below 10 seconds is refused.
pub const PROGRESS_DEADLINE_MESSAGE: &str = "progressDeadlineSeconds must be at least 10: it is how long a rollout or a scaling may go without progress before Progressing turns False with ProgressDeadlineExceeded";

/// The letters of Redis's `notify-keyspace-events`, as store-node accepts them.
pub const NOTIFY_KEYSPACE_EVENTS_LETTERS: &str = "KEg$lshzxetmdnA";
/// The rule that `spec.notifyKeyspaceEvents` is made of those letters only.
pub const NOTIFY_KEYSPACE_EVENTS_RULE: &str = "self.matches('^[KEg$lshzxetmdnA]*$')";
/// Why `spec.notifyKeyspaceEvents` with another character is refused.
pub const NOTIFY_KEYSPACE_EVENTS_MESSAGE: &str = "notifyKeyspaceEvents takes only the letters of Redis's notify-keyspace-events: K (publish on __keyspace@0__:<key>), E (on __keyevent@0__:<event>), then the classes g (DEL, EXPIRE, RENAME...), $ (strings), l (lists), s (sets), h (hashes), z (sorted sets), x (expired), e (evicted), n (new keys), t, m, d (accepted, never published), A (g$lshzxetd); e.g. Egx for Spring Session's expired and deleted events";
/// The rule that a non-empty `spec.notifyKeyspaceEvents` names a channel to publish on
/// (Redis accepts classes alone, and then publishes nothing: surely not what was meant).
pub const NOTIFY_KEYSPACE_EVENTS_CHANNEL_RULE: &str = "self == '' || self.matches('[KE]')";
/// Why classes without `K` or `E` are refused.
pub const NOTIFY_KEYSPACE_EVENTS_CHANNEL_MESSAGE: &str = "notifyKeyspaceEvents names classes but neither K nor E, so nothing would be published: add E (events on __keyevent@0__:<event>, e.g. Egx) or K (on __keyspace@0__:<key>), or leave the field out to publish nothing";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_messages_are_the_ones_validate_builds() {
        for (field, message) in [
            ("sessions.defaultTimeout", DEFAULT_TIMEOUT_DURATION_MESSAGE),
            ("sessions.maxTimeout", MAX_TIMEOUT_DURATION_MESSAGE),
            (
                "sessions.cleanupInterval",
                CLEANUP_INTERVAL_DURATION_MESSAGE,
            ),
            ("shutdownTimeout", SHUTDOWN_TIMEOUT_DURATION_MESSAGE),
            ("monitoring.interval", MONITORING_INTERVAL_DURATION_MESSAGE),
        ] {
            assert_eq!(duration_message(field), message);
        }
        for rule in [
            DURATION_RULE,
            DEFAULT_TIMEOUT_MIN_RULE,
            CLEANUP_INTERVAL_RANGE_RULE,
            SHUTDOWN_TIMEOUT_RANGE_RULE,
            MAX_TIMEOUT_ORDER_RULE,
        ] {
            assert!(rule.contains(DURATION_REGEX), "{rule}");
        }
    }

    #[test]
    fn the_keyspace_events_rule_takes_the_letters_the_message_names() {
        assert!(
            NOTIFY_KEYSPACE_EVENTS_RULE.contains(&format!("[{NOTIFY_KEYSPACE_EVENTS_LETTERS}]"))
        );
        for letter in NOTIFY_KEYSPACE_EVENTS_LETTERS.chars() {
            assert!(
                NOTIFY_KEYSPACE_EVENTS_MESSAGE.contains(&format!(" {letter} ("))
                    || NOTIFY_KEYSPACE_EVENTS_MESSAGE.contains(&format!(" {letter}, ")),
                "{letter}"
            );
        }
    }

    #[test]
    fn the_rules_name_the_bounds_their_messages_state() {
        assert!(REPLICAS_MAX_RULE.ends_with(&MAX_REPLICAS.to_string()));
        assert!(REPLICAS_MIN_RULE.ends_with(&MIN_REPLICAS.to_string()));
        assert!(MEMORY_FLOOR_RULE.contains(&format!("quantity('{MIN_MEMORY}')")));
        assert!(MEMORY_FLOOR_MESSAGE.contains(&format!("at least {MIN_MEMORY}")));
        assert_eq!(MIN_MEMORY_BYTES, 64 << 20);
    }
}
