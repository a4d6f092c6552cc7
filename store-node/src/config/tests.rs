//! Tests of the configuration: defaults as docs/contract.md states them, flag parsing and
//! the validation errors.

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
    assert!(Config::try_parse_from(["store-node", "--eviction-policy", "allkeys-lru"]).is_err());
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

#[test]
fn notify_keyspace_events_takes_redis_letters() {
    let config = Config::try_parse_from(["store-node"]).unwrap();
    assert_eq!(config.notify_keyspace_events, KeyspaceEvents::NONE);
    let config = Config::try_parse_from(["store-node", "--notify-keyspace-events", "Egx"]).unwrap();
    assert_eq!(config.notify_keyspace_events.to_string(), "gxE");
    let refused = Config::try_parse_from(["store-node", "--notify-keyspace-events", "Kq"])
        .map(|_| ())
        .map_err(|error| error.to_string());
    assert!(
        refused.as_ref().is_err_and(
            |error| error.contains("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        ),
        "{refused:?}"
    );
}
