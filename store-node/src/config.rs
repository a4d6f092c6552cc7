//! Command-line and environment configuration of a store-node, exactly as docs/contract.md
//! describes it: every option is a clap flag with an env var, so the operator can render a
//! StatefulSet and parse its args/env back with [`Config::try_parse_from`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use crate::store::EvictionPolicy;

/// Where the keyspace lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StorageMode {
    /// Memory only; a restarted node re-syncs from its peers.
    Ram,
    /// Write-ahead log and snapshots under `--data-dir` (docs/persistence.md).
    Disc,
}

/// When the write-ahead log is flushed to disc (disc mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// fsync before every acknowledgement.
    Always,
    /// fsync once a second.
    Everysec,
}

/// How many peers acknowledge a write before the client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteAck {
    /// Answer as soon as the write is applied locally.
    None,
    /// Wait for one member peer (with no member peers at all, answer at once).
    One,
    /// Wait for every discovered peer that has not left, connected or not: a member that is
    /// down or partitioned makes the write fail with `NOREPLICAS` after the ack timeout.
    All,
}

/// `--eviction-policy` takes the engine's policies by Redis's names.
impl ValueEnum for EvictionPolicy {
    fn value_variants<'a>() -> &'a [Self] {
        &EvictionPolicy::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            EvictionPolicy::Noeviction => "Refuse them with Redis's OOM error",
            EvictionPolicy::VolatileTtl => "Evict keys with a TTL, nearest expiry first (sampled)",
            EvictionPolicy::VolatileLru => {
                "Evict keys with a TTL, least recently used first (sampled)"
            }
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

/// Log output format.
/// What the memory limit is compared with (docs/memory.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MemoryAccounting {
    /// The process's real footprint, sampled every `--memory-sample-interval-ms`: its cgroup's
    /// memory without file pages when the cgroup has a limit, else its anonymous resident
    /// memory; plus what was accounted since the last sample.
    Footprint,
    /// The estimated data bytes only (several nodes in one process, as in-process tests run).
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Errors found when validating a parsed [`Config`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// Watermarks must satisfy 0 < low <= high <= 1.
    #[error("invalid watermarks: need 0 < low ({low}) <= high ({high}) <= 1")]
    Watermarks {
        /// The low watermark given.
        low: f64,
        /// The high watermark given.
        high: f64,
    },
    /// The default session timeout must be within 1..=max.
    #[error("invalid session timeouts: need 1 <= default ({default}) <= max ({max})")]
    SessionTimeouts {
        /// The default timeout given.
        default: u64,
        /// The maximum timeout given.
        max: u64,
    },
    /// The expiry sweep interval must be positive.
    #[error("expiry sweep interval must be at least 1 ms")]
    SweepInterval,
    /// `--memory-sample-interval-ms` is zero.
    #[error("--memory-sample-interval-ms must be at least 1")]
    MemorySampleInterval,
    /// The password file could not be read.
    #[error("failed to read password file {path}: {reason}")]
    PasswordFile {
        /// The file named by `--password-file`.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// store-node configuration (flags and env of docs/contract.md).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "store-node",
    version,
    about = "Redis-compatible session store node"
)]
pub struct Config {
    /// Address every listener binds.
    #[arg(long, env = "STORE_NODE_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Redis protocol (RESP) port; 0 lets the OS choose (tests).
    #[arg(long, env = "STORE_NODE_RESP_PORT", default_value_t = 6379)]
    pub resp_port: u16,

    /// HTTP port: session API, /metrics, /healthz, /readyz, /v1/status, /v1/cluster.
    #[arg(long, env = "STORE_NODE_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Peer replication port.
    #[arg(long, env = "STORE_NODE_PEER_PORT", default_value_t = 7379)]
    pub peer_port: u16,

    /// This node's name; in a StatefulSet the pod name `<cluster>-<ordinal>`. Defaults to the
    /// hostname.
    #[arg(long, env = "POD_NAME")]
    pub node_name: Option<String>,

    /// Namespace of the pod (informational).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address peers use to reach this node.
    #[arg(long, env = "POD_IP")]
    pub advertise_address: Option<String>,

    /// Headless Service name resolved every few seconds to find peers.
    #[arg(long, env = "CLUSTER_SERVICE_NAME")]
    pub cluster_service_name: Option<String>,

    /// Static `host:port` peer list, comma separated (tests).
    #[arg(long, env = "STORE_NODE_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// `ram` or `disc` (write-ahead log and snapshots under `--data-dir`).
    #[arg(
        long,
        env = "STORE_NODE_STORAGE_MODE",
        value_enum,
        default_value = "ram"
    )]
    pub storage_mode: StorageMode,

    /// Disc mode data directory (used by persistence).
    #[arg(long, env = "STORE_NODE_DATA_DIR", default_value = "/data")]
    pub data_dir: PathBuf,

    /// Write-ahead log fsync policy, `always` or `everysec` (used by persistence).
    #[arg(long, env = "STORE_NODE_FSYNC", value_enum, default_value = "everysec")]
    pub fsync: Fsync,

    /// Peer acknowledgements a write waits for before its reply: `none` (local apply only),
    /// `one` (one member peer holds it) or `all` (every discovered peer that has not left holds
    /// it). Not enough acknowledgements within `--write-ack-timeout-ms` answers `NOREPLICAS`;
    /// the write stays applied and still replicates. See docs/replication.md.
    #[arg(long, env = "STORE_NODE_WRITE_ACK", value_enum, default_value = "one")]
    pub write_ack: WriteAck,

    /// How long (ms) a write waits for the `--write-ack` acknowledgements.
    #[arg(long, env = "STORE_NODE_WRITE_ACK_TIMEOUT_MS", default_value_t = 1000)]
    pub write_ack_timeout_ms: u64,

    /// How long (ms) an empty node looks for a ready peer before the first-start rule applies
    /// (only ordinal 0 seeds an empty cluster). Hidden: a tuning knob for tests.
    #[arg(
        long,
        env = "STORE_NODE_FIRST_START_WAIT_MS",
        default_value_t = 15000,
        hide = true
    )]
    pub first_start_wait_ms: u64,

    /// Anti-entropy period (ms) per peer link. Hidden: a tuning knob for tests.
    #[arg(
        long,
        env = "STORE_NODE_ANTI_ENTROPY_INTERVAL_MS",
        default_value_t = 30000,
        hide = true
    )]
    pub anti_entropy_interval_ms: u64,

    /// Bytes of records the write-ahead log queues for its writer before writers wait for room
    /// (disc mode). Hidden: a tuning knob for tests of a slow disc.
    #[arg(
        long,
        env = "STORE_NODE_LOG_QUEUE_LIMIT_BYTES",
        default_value_t = 64 << 20,
        hide = true
    )]
    pub log_queue_limit_bytes: usize,

    /// TEST ONLY: enables `POST /v1/test/faults`, which blocks replication links to given peer
    /// addresses (partition tests) and stalls or fails the write-ahead log's writes (slow and
    /// full disc tests). Never set in production.
    #[arg(long, env = "STORE_NODE_TEST_FAULTS", hide = true)]
    pub test_faults: bool,

    /// Answer reads while the node is loading (not yet synced with its peers), as Redis's
    /// `replica-serve-stale-data yes` does: the data may be partial or old. By default (`no`)
    /// data commands get `LOADING` and the session API 503 until the node is ready. Also
    /// `CONFIG SET replica-serve-stale-data yes|no`. Writes always wait for readiness.
    #[arg(
        long,
        env = "STORE_NODE_REPLICA_SERVE_STALE_DATA",
        default_value = "no",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set
    )]
    pub replica_serve_stale_data: bool,

    /// TEST ONLY: shifts this node's clock by this many milliseconds (negative: behind), as a
    /// machine whose clock is off would be (the clock-skew tests). Never set in production.
    #[arg(
        long,
        env = "STORE_NODE_TEST_CLOCK_OFFSET_MS",
        default_value_t = 0,
        allow_negative_numbers = true,
        hide = true
    )]
    pub test_clock_offset_ms: i64,

    /// Idle timeout (s) of an HTTP session created without one.
    #[arg(
        long,
        env = "STORE_NODE_DEFAULT_SESSION_TIMEOUT",
        default_value_t = 1800
    )]
    pub default_session_timeout: u64,

    /// Largest idle timeout (s) the HTTP API accepts.
    #[arg(long, env = "STORE_NODE_MAX_SESSION_TIMEOUT", default_value_t = 86400)]
    pub max_session_timeout: u64,

    /// Active expiry tick in milliseconds.
    #[arg(
        long,
        env = "STORE_NODE_EXPIRY_SWEEP_INTERVAL_MS",
        default_value_t = 100
    )]
    pub expiry_sweep_interval_ms: u64,

    /// Memory limit in bytes; 0 = read the cgroup limit (v1 or v2), unlimited if none. A
    /// cgroup limit below it wins.
    #[arg(long, env = "STORE_NODE_MAX_MEMORY", default_value_t = 0)]
    pub max_memory: u64,

    /// Fraction of the effective limit (the limit minus a reserve for transient peaks: an
    /// eighth, at least 16 MiB, at most a quarter) above which growth writes are refused (or
    /// evict) and the alarm is raised.
    #[arg(long, env = "STORE_NODE_HIGH_WATERMARK", default_value_t = 0.8)]
    pub high_watermark: f64,

    /// Fraction of the effective limit below which the alarm clears.
    #[arg(long, env = "STORE_NODE_LOW_WATERMARK", default_value_t = 0.7)]
    pub low_watermark: f64,

    /// What used memory is: `footprint` (the process's real footprint) or `data` (the data
    /// estimate alone). Hidden: `data` is for several nodes in one process (tests).
    #[arg(
        long,
        env = "STORE_NODE_MEMORY_ACCOUNTING",
        value_enum,
        default_value = "footprint",
        hide = true
    )]
    pub memory_accounting: MemoryAccounting,

    /// How often (ms) the footprint is sampled. Hidden: a tuning knob.
    #[arg(
        long,
        env = "STORE_NODE_MEMORY_SAMPLE_INTERVAL_MS",
        default_value_t = 100,
        hide = true
    )]
    pub memory_sample_interval_ms: u64,

    /// `noeviction`, `volatile-ttl` or `volatile-lru`.
    #[arg(
        long,
        env = "STORE_NODE_EVICTION_POLICY",
        value_enum,
        default_value = "noeviction"
    )]
    pub eviction_policy: EvictionPolicy,

    /// File holding the client password (the operator mounts its Secret at
    /// `/etc/sessionstore/auth/password`); no password when absent. Each line is an accepted
    /// password: while a new password rolls out the operator puts the previous one on a second
    /// line, so clients using either are let in.
    #[arg(long, env = "STORE_NODE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Maximum number of RESP connections.
    #[arg(long, env = "STORE_NODE_MAX_CLIENTS", default_value_t = 10000)]
    pub max_clients: usize,

    /// Bytes a RESP client may hold in commands queued after MULTI plus input not yet parsed;
    /// a client past it is disconnected, as by Redis's `client-query-buffer-limit` (same
    /// default, 1 GiB).
    #[arg(
        long,
        env = "STORE_NODE_CLIENT_QUERY_BUFFER_LIMIT",
        default_value_t = 1 << 30
    )]
    pub client_query_buffer_limit: usize,

    /// Seconds after which an idle RESP client is disconnected; 0 = never.
    #[arg(long, env = "STORE_NODE_CLIENT_IDLE_TIMEOUT", default_value_t = 0)]
    pub client_idle_timeout: u64,

    /// Bound (s) on graceful shutdown.
    #[arg(long, env = "STORE_NODE_SHUTDOWN_TIMEOUT", default_value_t = 20)]
    pub shutdown_timeout: u64,

    /// Runtime worker threads serving HTTP, replication and background work; 0 = one per CPU
    /// the process may use (its affinity and cgroup CPU quota count).
    #[arg(long, env = "STORE_NODE_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    /// Threads serving RESP connections, each with its own event loop (a connection stays on
    /// one thread); 0 = one per CPU the process may use beyond the first, at least one (the
    /// kernel's network stack and the clients need a core too).
    #[arg(long, env = "STORE_NODE_IO_THREADS", default_value_t = 0)]
    pub io_threads: usize,

    /// `text` or `json`.
    #[arg(
        long,
        env = "STORE_NODE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// tracing filter, e.g. `info` or `store_node=debug`.
    #[arg(long, env = "STORE_NODE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Config {
    /// Checks the cross-field rules clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (low, high) = (self.low_watermark, self.high_watermark);
        if !(low > 0.0 && low <= high && high <= 1.0) {
            return Err(ConfigError::Watermarks { low, high });
        }
        if self.default_session_timeout == 0
            || self.default_session_timeout > self.max_session_timeout
        {
            return Err(ConfigError::SessionTimeouts {
                default: self.default_session_timeout,
                max: self.max_session_timeout,
            });
        }
        if self.expiry_sweep_interval_ms == 0 {
            return Err(ConfigError::SweepInterval);
        }
        if self.memory_sample_interval_ms == 0 {
            return Err(ConfigError::MemorySampleInterval);
        }
        Ok(())
    }

    /// The number of runtime worker threads: `--worker-threads`, or one per available CPU.
    pub fn resolved_worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// The number of RESP connection threads: `--io-threads`, or one per available CPU beyond
    /// the first, at least one.
    pub fn resolved_io_threads(&self) -> usize {
        if self.io_threads > 0 {
            return self.io_threads;
        }
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .saturating_sub(1)
            .max(1)
    }

    /// Reads the password file, trimming one trailing newline (Secrets mounted from
    /// `kubectl create secret --from-file` often carry one). Each remaining line is an accepted
    /// password (empty lines are none).
    pub fn read_password(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::PasswordFile {
            path: path.display().to_string(),
            reason: err.to_string(),
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        Ok(Some(password.to_string()))
    }

    /// The node name: `--node-name`, else the hostname, else `store-node`.
    pub fn resolved_node_name(&self) -> String {
        if let Some(name) = &self.node_name {
            return name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "store-node".to_string())
    }

    /// Whether replication runs: some peer source (`--peers` or a Service name) is configured.
    pub fn replicated(&self) -> bool {
        self.peers.iter().any(|peer| !peer.trim().is_empty())
            || self
                .cluster_service_name
                .as_deref()
                .is_some_and(|name| !name.is_empty())
    }

    /// A configuration for tests: loopback, OS-chosen ports, defaults otherwise.
    pub fn for_tests() -> Config {
        let mut config = Config::parse_from(["store-node"]);
        config.bind = IpAddr::from([127, 0, 0, 1]);
        config.resp_port = 0;
        config.http_port = 0;
        config.node_name = Some("test-0".to_string());
        // Nodes started in-process share the test binary's footprint.
        config.memory_accounting = MemoryAccounting::Data;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_flag_overrides_the_cpu_count() {
        let config = Config::try_parse_from(["store-node", "--worker-threads", "1"]).unwrap();
        assert_eq!(config.resolved_worker_threads(), 1);
        assert!(Config::try_parse_from(["store-node", "--worker-threads", "-1"]).is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = Config::try_parse_from(["store-node"]).unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0");
        assert_eq!(config.resp_port, 6379);
        assert_eq!(config.http_port, 8080);
        assert_eq!(config.peer_port, 7379);
        assert_eq!(config.storage_mode, StorageMode::Ram);
        assert_eq!(config.data_dir, PathBuf::from("/data"));
        assert_eq!(config.fsync, Fsync::Everysec);
        assert_eq!(config.write_ack, WriteAck::One);
        assert_eq!(config.default_session_timeout, 1800);
        assert_eq!(config.max_session_timeout, 86400);
        assert_eq!(config.expiry_sweep_interval_ms, 100);
        assert_eq!(config.max_memory, 0);
        assert_eq!(config.high_watermark, 0.8);
        assert_eq!(config.low_watermark, 0.7);
        assert_eq!(config.eviction_policy, EvictionPolicy::Noeviction);
        assert_eq!(config.max_clients, 10000);
        assert_eq!(config.client_idle_timeout, 0);
        assert_eq!(config.shutdown_timeout, 20);
        assert_eq!(config.worker_threads, 0);
        assert_eq!(config.io_threads, 0);
        assert_eq!(
            config.resolved_worker_threads(),
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        );
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.log_level, "info");
        assert!(config.peers.is_empty());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn io_threads_leave_a_cpu_to_the_kernel_unless_set() {
        let mut config = Config::parse_from(["store-node"]);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(config.resolved_io_threads(), (cpus - 1).max(1));
        config.io_threads = 3;
        assert_eq!(config.resolved_io_threads(), 3);
    }

    #[test]
    fn flags_parse_and_validate() {
        let config = Config::try_parse_from([
            "store-node",
            "--peers",
            "a:7379,b:7379",
            "--eviction-policy",
            "volatile-lru",
            "--write-ack",
            "all",
            "--fsync",
            "always",
            "--max-memory",
            "1048576",
        ])
        .unwrap();
        assert_eq!(config.peers, vec!["a:7379", "b:7379"]);
        assert_eq!(config.eviction_policy, EvictionPolicy::VolatileLru);
        assert_eq!(config.write_ack, WriteAck::All);
        assert_eq!(config.fsync, Fsync::Always);
        assert_eq!(config.max_memory, 1048576);
        assert!(Config::try_parse_from(["store-node", "--write-ack", "two"]).is_err());
        assert!(
            Config::try_parse_from(["store-node", "--eviction-policy", "allkeys-lru"]).is_err()
        );
    }

    #[test]
    fn disc_mode_is_accepted_with_its_data_dir_and_fsync() {
        let config = Config::try_parse_from([
            "store-node",
            "--storage-mode",
            "disc",
            "--data-dir",
            "/var/lib/store",
            "--fsync",
            "always",
        ])
        .unwrap();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.storage_mode, StorageMode::Disc);
        assert_eq!(config.data_dir, std::path::PathBuf::from("/var/lib/store"));
        assert_eq!(config.fsync, Fsync::Always);
    }

    #[test]
    fn bad_watermarks_are_refused() {
        let config = Config::try_parse_from([
            "store-node",
            "--high-watermark",
            "0.5",
            "--low-watermark",
            "0.6",
        ])
        .unwrap();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Watermarks { .. })
        ));
    }
}
