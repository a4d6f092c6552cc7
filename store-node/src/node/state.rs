//! State shared by the RESP server, the HTTP API and the background tasks of one node.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::client_limits::ClientLimits;
use super::hook::NodeHook;
use super::memory::MemoryProbe;
use super::security::Security;
use crate::config::{Config, KeyspaceEvents};
use crate::metrics::Metrics;
use crate::persistence::{Persistence, RecoveryProgress};
use crate::pubsub::{Hub, Notifier};
use crate::replication::{self, Replication, TransportFaults};
use crate::scripting::ScriptEngine;
use crate::store::MemoryEngine;

/// Lifecycle of a node as `/v1/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Bootstrapping (from a peer or disc); not ready.
    Loading,
    /// Serving.
    Ready,
    /// Shutting down or asked to leave; not ready.
    Leaving,
    /// Stopped serving.
    Left,
}

impl Lifecycle {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Loading => "loading",
            Lifecycle::Ready => "ready",
            Lifecycle::Leaving => "leaving",
            Lifecycle::Left => "left",
        }
    }
}

/// Everything the protocol handlers share.
#[derive(Debug)]
pub struct NodeState {
    /// The keyspace.
    pub engine: Arc<MemoryEngine>,
    /// Replication and the write-ahead log, as plugged into the engine's write path.
    pub hook: Arc<NodeHook>,
    /// The client password, if one is configured.
    pub password: Option<String>,
    /// `--node-name` (or the hostname).
    pub node_name: String,
    /// A per-process id: the node name plus a random suffix.
    pub node_id: String,
    /// When the node started.
    pub started: Instant,
    /// The configuration the node runs with.
    pub config: Config,
    /// Counters and histograms for `/metrics` and INFO.
    pub metrics: Metrics,
    /// Connected RESP clients.
    pub clients: AtomicUsize,
    /// Held for reading by every batch of RESP commands and for writing by EXEC and by a Lua
    /// script, which makes transactions and scripts isolated from other RESP clients.
    pub transaction_gate: parking_lot::RwLock<()>,
    /// Cancelled when the node stops serving clients (it left the cluster, or shuts down).
    pub stop_serving: CancellationToken,
    /// TEST ONLY: replication faults (`--test-faults`).
    pub test_faults: OnceLock<Arc<TransportFaults>>,
    /// Disc mode: how far recovery from `--data-dir` has got.
    pub recovery: Arc<RecoveryProgress>,
    /// The footprint sampler and its last readings.
    pub memory: MemoryProbe,
    /// TLS, the peer key, named users and the operator token (none until the server loads
    /// them from the configured files).
    pub security: Security,
    /// Request and buffer limits of RESP clients, and their buffers' registry.
    pub client_limits: ClientLimits,
    /// Pub/sub subscriptions of this node's connections.
    pub pubsub: Arc<Hub>,
    /// The Lua interpreter and this node's script cache.
    pub scripts: ScriptEngine,
    lifecycle: AtomicU8,
    serve_stale_data: AtomicBool,
    next_client_id: AtomicU64,
    /// Keyspace notifications (`notify-keyspace-events`), published through [`Self::pubsub`].
    pub notifier: Arc<Notifier>,
    /// Settings accepted with CONFIG SET and reported by CONFIG GET (Redis's encoding
    /// parameters, which store-node reports and OBJECT ENCODING follows): name to value.
    settings: parking_lot::Mutex<std::collections::BTreeMap<&'static str, String>>,
}

impl NodeState {
    /// Builds the shared state and installs the node's write hook in `engine` (which must
    /// have none yet).
    pub fn new(config: Config, engine: Arc<MemoryEngine>, password: Option<String>) -> NodeState {
        let pubsub = Arc::new(Hub::default());
        let notifier = Arc::new(Notifier::new(pubsub.clone(), config.notify_keyspace_events));
        let hook = Arc::new(NodeHook::new(notifier.clone()));
        if !engine.set_hook(hook.clone()) {
            tracing::error!(
                "the engine already had a write hook: replication and the log are not plugged in"
            );
        }
        let node_name = config.resolved_node_name();
        let serve_stale_data = config.replica_serve_stale_data;
        let suffix = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id()) as u16
        };
        let memory = MemoryProbe::new(&config);
        let client_limits = ClientLimits::new(&config);
        NodeState {
            engine,
            hook,
            password,
            node_id: format!("{node_name}-{suffix:04x}"),
            node_name,
            started: Instant::now(),
            config,
            metrics: Metrics::default(),
            clients: AtomicUsize::new(0),
            transaction_gate: parking_lot::RwLock::new(()),
            stop_serving: CancellationToken::new(),
            test_faults: OnceLock::new(),
            recovery: Arc::new(RecoveryProgress::default()),
            memory,
            security: Security::default(),
            client_limits,
            pubsub,
            scripts: ScriptEngine::new(),
            lifecycle: AtomicU8::new(Lifecycle::Ready as u8),
            serve_stale_data: AtomicBool::new(serve_stale_data),
            next_client_id: AtomicU64::new(1),
            notifier,
            settings: parking_lot::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The current lifecycle state: the server's own (leaving, left) or, while it serves,
    /// replication's (loading until synced with its peers).
    pub fn lifecycle(&self) -> Lifecycle {
        let own = match self.lifecycle.load(Ordering::Relaxed) {
            0 => Lifecycle::Loading,
            1 => Lifecycle::Ready,
            2 => Lifecycle::Leaving,
            _ => Lifecycle::Left,
        };
        match (own, self.replication()) {
            (Lifecycle::Ready, Some(replication)) => match replication.state() {
                replication::NodeState::Loading => Lifecycle::Loading,
                replication::NodeState::Ready => Lifecycle::Ready,
                replication::NodeState::Leaving => Lifecycle::Leaving,
                replication::NodeState::Left => Lifecycle::Left,
            },
            _ => own,
        }
    }

    /// Why the node is not ready (the `/readyz` body), `None` when ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        match self.lifecycle() {
            Lifecycle::Ready => None,
            Lifecycle::Loading if self.recovering() => {
                Some(format!("loading: {}", self.recovery.snapshot().describe()))
            }
            Lifecycle::Loading => Some(
                self.replication()
                    .and_then(Replication::not_ready_reason)
                    .unwrap_or_else(|| "loading: starting".to_string()),
            ),
            Lifecycle::Leaving => Some("leaving".to_string()),
            Lifecycle::Left => Some("left".to_string()),
        }
    }

    /// Whether the node is still recovering its keyspace from `--data-dir` (disc mode): its
    /// listeners answer, but data commands get `LOADING` until the keyspace is complete.
    pub fn recovering(&self) -> bool {
        self.lifecycle.load(Ordering::Relaxed) == Lifecycle::Loading as u8
    }

    /// Whether data commands must wait (`LOADING`, 503): the node recovers from disc, or it
    /// is not synced with its peers yet. Probes, INFO, PING and the like answer meanwhile.
    pub fn data_loading(&self) -> bool {
        self.recovering() || self.replication().is_some_and(Replication::is_loading)
    }

    /// Whether reads are answered while the node is synced with its peers only in part
    /// (`replica-serve-stale-data`); never during disc recovery, when the keyspace is partial
    /// on this very node.
    pub fn serves_stale_reads(&self) -> bool {
        !self.recovering() && self.serve_stale_data.load(Ordering::Relaxed)
    }

    /// Whether reads are answered while loading (`CONFIG GET replica-serve-stale-data`).
    pub fn serve_stale_data(&self) -> bool {
        self.serve_stale_data.load(Ordering::Relaxed)
    }

    /// Sets `replica-serve-stale-data`.
    pub fn set_serve_stale_data(&self, serve: bool) {
        self.serve_stale_data.store(serve, Ordering::Relaxed);
    }

    /// Replication, when peers are configured.
    pub fn replication(&self) -> Option<&Replication> {
        self.hook.replication()
    }

    /// The write-ahead log, in disc mode once recovered.
    pub fn persistence(&self) -> Option<&Arc<Persistence>> {
        self.hook.persistence()
    }

    /// Moves to another lifecycle state.
    pub fn set_lifecycle(&self, lifecycle: Lifecycle) {
        let previous = self.lifecycle.swap(lifecycle as u8, Ordering::Relaxed);
        if previous != lifecycle as u8 {
            tracing::info!(state = lifecycle.as_str(), "node state changed");
        }
    }

    /// Ends disc recovery: `loading` becomes `ready`, unless the node was asked to leave
    /// meanwhile.
    pub fn finish_recovery(&self) {
        let finished = self.lifecycle.compare_exchange(
            Lifecycle::Loading as u8,
            Lifecycle::Ready as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if finished.is_ok() {
            tracing::info!(state = Lifecycle::Ready.as_str(), "node state changed");
        }
    }

    /// A fresh client id.
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Seconds since start.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// `notify-keyspace-events` in Redis's canonical form (`CONFIG GET`).
    pub fn notify_keyspace_events(&self) -> String {
        self.notifier.flags().to_string()
    }

    /// Sets `notify-keyspace-events` from Redis's letters; the error is Redis's CONFIG SET
    /// reason for a letter that names no class.
    pub fn set_notify_keyspace_events(&self, value: &str) -> Result<(), String> {
        self.notifier.set_flags(KeyspaceEvents::parse(value)?);
        Ok(())
    }

    /// A setting stored with [`NodeState::set_setting`], if any.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.settings.lock().get(name).cloned()
    }

    /// Stores a setting (CONFIG SET of a parameter store-node reports but need not act on).
    pub fn set_setting(&self, name: &'static str, value: String) {
        self.settings.lock().insert(name, value);
    }
}
