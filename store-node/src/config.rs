//! Command-line and environment configuration of a store-node, exactly as docs/contract.md
//! describes it: every option is a clap flag with an env var, so the operator can render a
//! StatefulSet and parse its args/env back with [`Config::try_parse_from`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};

mod keyspace_events;
mod units;

pub use crate::store::EvictionPolicy;
pub use crate::tls::ClientAuth;
pub use keyspace_events::{parse_keyspace_events, KeyspaceEvents};
pub use units::{parse_buffer_limit, parse_memory, parse_memory_or_percent, MemoryOrPercent};

/// `--tls-auth-clients` takes Redis's values.
impl ValueEnum for ClientAuth {
    fn value_variants<'a>() -> &'a [Self] {
        &[ClientAuth::Yes, ClientAuth::No, ClientAuth::Optional]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            ClientAuth::Yes => "Require a certificate signed by the CA",
            ClientAuth::No => "Ask for no certificate",
            ClientAuth::Optional => "Verify a certificate when one is presented",
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

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
    /// TLS is asked for without a certificate and key.
    #[error("{needed_by} needs --tls-cert-file and --tls-key-file")]
    TlsFiles {
        /// The option that asks for TLS.
        needed_by: &'static str,
    },
    /// Neither a plain nor a TLS RESP port.
    #[error("no RESP listener: --resp-port is 0 and --tls-port is not set")]
    NoRespListener,
    /// An HTTP limit is zero.
    #[error("{0} must be at least 1")]
    HttpLimit(&'static str),
    /// The operator token file could not be read or is empty.
    #[error("failed to read the operator token file {path}: {reason}")]
    OperatorTokenFile {
        /// The file named by `--operator-token-file`.
        path: String,
        /// Why it failed.
        reason: String,
    },
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

    /// Plain (unencrypted) Redis protocol (RESP) port; 0 disables it, as Redis's `port 0`
    /// (then `--tls-port` must be set).
    #[arg(long, env = "STORE_NODE_RESP_PORT", default_value_t = 6379)]
    pub resp_port: u16,

    /// RESP over TLS on this port (Redis's `tls-port`); 0 = none. Needs `--tls-cert-file` and
    /// `--tls-key-file`.
    #[arg(long, env = "STORE_NODE_TLS_PORT", default_value_t = 0)]
    pub tls_port: u16,

    /// PEM certificate chain the node serves, its own certificate first (Redis's
    /// `tls-cert-file`). Re-read when it changes: new connections get the new certificate.
    #[arg(long, env = "STORE_NODE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the certificate (Redis's `tls-key-file`).
    #[arg(long, env = "STORE_NODE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA certificates that client certificates and peers' certificates must chain to
    /// (Redis's `tls-ca-cert-file`).
    #[arg(long, env = "STORE_NODE_TLS_CA_CERT_FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,

    /// Whether TLS clients must present a certificate signed by the CA: `yes` (Redis's
    /// default), `no`, or `optional` (verified when presented). Over HTTP, probes, /metrics and
    /// /v1/status never need one; with `yes` the session API does.
    #[arg(
        long,
        env = "STORE_NODE_TLS_AUTH_CLIENTS",
        value_enum,
        default_value = "yes"
    )]
    pub tls_auth_clients: ClientAuth,

    /// `yes`: peers speak mutual TLS on the peer port, each proving a certificate signed by
    /// the CA (Redis's `tls-replication`). Needs the certificate, key and CA.
    #[arg(
        long,
        env = "STORE_NODE_TLS_REPLICATION",
        default_value = "no",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub tls_replication: bool,

    /// `yes`: the HTTP port speaks HTTPS (with the same certificate).
    #[arg(
        long,
        env = "STORE_NODE_TLS_HTTP",
        default_value = "no",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub tls_http: bool,

    /// File holding the cluster's peer key (one key per line: the first is used, any is
    /// accepted, for rotation). Peers prove they hold it before anything else is sent; a peer
    /// without it is refused.
    #[arg(long, env = "STORE_NODE_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// Directory of named users: `<dir>/<user>/password` and `<dir>/<user>/role`
    /// (`readwrite` or `readonly`). Re-read when it changes.
    #[arg(long, env = "STORE_NODE_USERS_DIR")]
    pub users_dir: Option<PathBuf>,

    /// File holding the operator's token, which `POST /v1/cluster/leave` requires (whether or
    /// not clients need a password); without it the endpoint refuses every call.
    #[arg(long, env = "STORE_NODE_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,

    /// Largest argument of an authenticated client's request (Redis's `proto-max-bulk-len`;
    /// `512mb`, at least `1mb`). Before AUTH: 16 KiB, as Redis.
    #[arg(
        long,
        env = "STORE_NODE_PROTO_MAX_BULK_LEN",
        default_value = "512mb",
        value_parser = parse_buffer_limit
    )]
    pub proto_max_bulk_len: u64,

    /// Most arguments of an authenticated client's request. Before AUTH: 10, as Redis.
    #[arg(
        long,
        env = "STORE_NODE_PROTO_MAX_MULTIBULK_LEN",
        default_value_t = 1024 * 1024
    )]
    pub proto_max_multibulk_len: u64,

    /// Largest query buffer of one client (Redis's `client-query-buffer-limit`, `1gb`, at least
    /// `1mb`): a client whose unparsed input exceeds it is closed.
    #[arg(
        long,
        env = "STORE_NODE_CLIENT_QUERY_BUFFER_LIMIT",
        default_value = "1gb",
        value_parser = parse_buffer_limit
    )]
    pub client_query_buffer_limit: u64,

    /// Cap on the input and output buffers of all RESP clients together, bytes (`64mb`) or a
    /// percentage of the memory limit (Redis's `maxmemory-clients`); above it the clients
    /// holding the most are closed first. 0 = no cap (Redis's default); store-node defaults
    /// to a quarter of the limit, because a pod's limit is hard.
    #[arg(
        long,
        env = "STORE_NODE_MAXMEMORY_CLIENTS",
        default_value = "25%",
        value_parser = parse_memory_or_percent
    )]
    pub maxmemory_clients: MemoryOrPercent,

    /// HTTP port: session API, /metrics, /healthz, /readyz, /v1/status, /v1/cluster; 0 lets
    /// the OS choose (tests).
    #[arg(long, env = "STORE_NODE_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Seconds an HTTP client has to send a request's headers, from connecting or from the
    /// previous response (so also how long an idle keep-alive connection stays open).
    #[arg(long, env = "STORE_NODE_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    pub http_header_timeout: u64,

    /// Seconds to read an HTTP request's body and answer it; 408 after.
    #[arg(long, env = "STORE_NODE_HTTP_REQUEST_TIMEOUT", default_value_t = 30)]
    pub http_request_timeout: u64,

    /// Most open HTTP connections; more are closed at once.
    #[arg(long, env = "STORE_NODE_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,

    /// Most HTTP requests served at once; more are answered 503.
    #[arg(
        long,
        env = "STORE_NODE_HTTP_MAX_CONCURRENT_REQUESTS",
        default_value_t = 256
    )]
    pub http_max_concurrent_requests: usize,

    /// How often (ms) the TLS files, the peer key and the users directory are re-read.
    /// Hidden: a tuning knob for tests.
    #[arg(
        long,
        env = "STORE_NODE_RELOAD_INTERVAL_MS",
        default_value_t = 3000,
        hide = true
    )]
    pub reload_interval_ms: u64,

    /// Tests only, not a flag: a RESP port of 0 (plain or TLS, with a certificate configured)
    /// binds a port the OS chooses instead of disabling the listener.
    #[arg(skip)]
    pub any_port: bool,

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

    /// Keyspace notifications, as Redis's `notify-keyspace-events` letters
    /// (`Ag$lshzxeKEtmdn`, e.g. `Egx` for Spring Session): which events this node publishes on
    /// `__keyspace@0__:<key>` and `__keyevent@0__:<event>`. Empty (the default): none. Also
    /// `CONFIG SET notify-keyspace-events`.
    #[arg(
        long,
        env = "STORE_NODE_NOTIFY_KEYSPACE_EVENTS",
        default_value = "",
        value_parser = parse_keyspace_events
    )]
    pub notify_keyspace_events: KeyspaceEvents,

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
        let has_files = self.tls_cert_file.is_some() && self.tls_key_file.is_some();
        for (asked, needed_by) in [
            (self.tls_port != 0, "--tls-port"),
            (self.tls_replication, "--tls-replication yes"),
            (self.tls_http, "--tls-http yes"),
        ] {
            if asked && !has_files {
                return Err(ConfigError::TlsFiles { needed_by });
            }
        }
        if self.resp_listen_port().is_none() && self.tls_listen_port().is_none() {
            return Err(ConfigError::NoRespListener);
        }
        for (value, name) in [
            (self.http_header_timeout as usize, "--http-header-timeout"),
            (self.http_request_timeout as usize, "--http-request-timeout"),
            (self.http_max_connections, "--http-max-connections"),
            (
                self.http_max_concurrent_requests,
                "--http-max-concurrent-requests",
            ),
            (self.reload_interval_ms as usize, "--reload-interval-ms"),
        ] {
            if value == 0 {
                return Err(ConfigError::HttpLimit(name));
            }
        }
        Ok(())
    }

    /// The port of the plain RESP listener, `None` when it is disabled (`--resp-port 0`).
    pub fn resp_listen_port(&self) -> Option<u16> {
        (self.resp_port != 0 || self.any_port).then_some(self.resp_port)
    }

    /// The port of the TLS RESP listener, `None` without one.
    pub fn tls_listen_port(&self) -> Option<u16> {
        let configured = self.tls_cert_file.is_some() && self.tls_key_file.is_some();
        (self.tls_port != 0 || (self.any_port && configured)).then_some(self.tls_port)
    }

    /// The TLS settings, when a certificate and key are configured.
    pub fn tls_settings(&self) -> Option<crate::tls::TlsSettings> {
        Some(crate::tls::TlsSettings {
            cert_file: self.tls_cert_file.clone()?,
            key_file: self.tls_key_file.clone()?,
            ca_file: self.tls_ca_cert_file.clone(),
            client_auth: self.tls_auth_clients,
            clients: self.tls_listen_port().is_some() || self.tls_http,
            peers: self.tls_replication,
        })
    }

    /// Reads the operator token file (trimming one trailing newline).
    pub fn read_operator_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.operator_token_file else {
            return Ok(None);
        };
        let failed = |reason: String| ConfigError::OperatorTokenFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|err| failed(err.to_string()))?;
        let token = text.strip_suffix('\n').unwrap_or(&text);
        let token = token.strip_suffix('\r').unwrap_or(token);
        if token.is_empty() {
            return Err(failed("the file is empty".to_string()));
        }
        Ok(Some(token.to_string()))
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
        config.any_port = true;
        config.node_name = Some("test-0".to_string());
        // Nodes started in-process share the test binary's footprint.
        config.memory_accounting = MemoryAccounting::Data;
        config
    }
}

#[cfg(test)]
mod tests;
