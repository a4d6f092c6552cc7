//! Micro-benchmark of the persistence core (not a test): appends per second with
//! `fsync=everysec` and `fsync=always` (64 concurrent writers, each waiting for durability like
//! a client would), then recovery time of N records of 1 KiB.
//!
//! `cargo run --release -p store-node --example wal_bench -- [seconds] [recovery-records]`
//! (defaults: 3 s per mode, 1,000,000 records). Data goes to a temporary directory under
//! `$TMPDIR` that is deleted at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store_node::config::Fsync;
use store_node::persistence::{Persistence, PersistenceConfig};
use store_node::store::{Record, Stamp, Value};

/// The node id the benchmark's fresh directories record.
const NODE_ID: u32 = 1;

const WRITERS: u64 = 64;
const VALUE: usize = 1024;

fn record(writer: u64, index: u64, hlc: u64) -> Record {
    Record::live(
        Bytes::from(format!("session:{writer:02}:{index:08}")),
        Stamp { hlc, origin: 1 },
        Value::String(Bytes::from(vec![b'x'; VALUE])),
        Some(4_000_000_000_000),
    )
}

fn fresh_dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn throughput(base: &Path, fsync: Fsync, seconds: u64) -> anyhow::Result<()> {
    let dir = fresh_dir(base, &format!("{fsync:?}"))?;
    let (log, _) = Persistence::open(PersistenceConfig::new(&dir, fsync, NODE_ID), 0, 0)?;
    let log = Arc::new(log);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let seq = log.append(&record(writer, done, done * WRITERS + writer + 1))?;
                log.wait_durable(seq).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = log.metrics().snapshot();
    println!(
        "{:<9} {:>10.0} appends/s {:>8.1} MB/s  fsyncs {:>6}  fsync p50 <= {:>6} us  p99 <= {:>7} us",
        format!("{fsync:?}").to_lowercase(),
        total as f64 / elapsed,
        metrics.bytes_written as f64 / elapsed / 1e6,
        metrics.fsyncs,
        metrics.fsync_quantile_micros(0.5).unwrap_or(0),
        metrics.fsync_quantile_micros(0.99).unwrap_or(0),
    );
    drop(log);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

async fn recovery(base: &Path, records: u64) -> anyhow::Result<()> {
    let dir = fresh_dir(base, "recovery")?;
    let config = PersistenceConfig::new(&dir, Fsync::Everysec, NODE_ID);
    let (log, _) = Persistence::open(config.clone(), 0, 0)?;
    let log = Arc::new(log);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..4u64 {
        let log = log.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut last = 0;
            for index in (writer..records).step_by(4) {
                last = log.append(&record(0, index, index + 1))?;
            }
            anyhow::Ok(last)
        }));
    }
    for task in tasks {
        let last = task.await??;
        log.wait_durable(last).await?;
    }
    let written = started.elapsed();
    let disc = log.metrics().snapshot().disc_bytes;
    Arc::try_unwrap(log)
        .map_err(|_| anyhow::anyhow!("log still shared"))?
        .shutdown()?;
    let started = Instant::now();
    let (log, recovered) = Persistence::open(config, 0, 0)?;
    let elapsed = started.elapsed();
    println!(
        "recovery  {} records of {VALUE} B ({:.0} MB on disc, written in {:.1} s): loaded {} in {:.2} s ({:.0} MB/s)",
        recovered.report.records_read,
        disc as f64 / 1e6,
        written.as_secs_f64(),
        recovered.report.records_loaded,
        elapsed.as_secs_f64(),
        recovered.report.bytes_read as f64 / elapsed.as_secs_f64() / 1e6,
    );
    drop(recovered);
    log.shutdown()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|arg| arg.parse()).transpose()?.unwrap_or(3);
    let records: u64 = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let base = std::env::temp_dir().join(format!("wal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let result = async {
        throughput(&base, Fsync::Everysec, seconds).await?;
        throughput(&base, Fsync::Always, seconds).await?;
        recovery(&base, records).await
    }
    .await;
    std::fs::remove_dir_all(&base)?;
    result
}
