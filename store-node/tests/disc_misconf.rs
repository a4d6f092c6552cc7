//! Disc mode when the write-ahead log cannot be written: writes are refused with
//! `MISCONF` *before* they are applied, so a refused write has no effect; the write in flight
//! when the disc failed is answered `MISCONF` too, stays in memory and is written once the disc
//! recovers; reads go on; after healing, writes are accepted again and a restart finds
//! everything that took effect.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{client, node_with};
use store_node::config::{Fsync, StorageMode};
use store_node::persistence::WriterFault;
use store_node::server::RunningNode;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    TempDir(std::env::temp_dir().join(format!("store-node-misconf-{}-{nanos}", std::process::id())))
}

async fn disc_node(dir: &TempDir) -> RunningNode {
    let data_dir = dir.0.clone();
    node_with(move |config| {
        config.storage_mode = StorageMode::Disc;
        config.data_dir = data_dir;
        config.fsync = Fsync::Always;
    })
    .await
}

async fn query(
    connection: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<redis::Value> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(connection).await
}

fn assert_misconf(result: redis::RedisResult<redis::Value>, what: &str) {
    let error = result.expect_err(what);
    assert_eq!(error.code(), Some("MISCONF"), "{what}: {error:?}");
    let detail = error.detail().unwrap_or_default();
    assert!(
        detail.starts_with("Errors writing to the write-ahead log: write ")
            && detail.ends_with("No space left on device (os error 28)"),
        "{what}: {detail}"
    );
}

fn bulk(text: &str) -> redis::Value {
    redis::Value::BulkString(text.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_with_misconf_has_no_effect() {
    let dir = temp_dir();
    let node = disc_node(&dir).await;
    let mut connection = client(&node).await;
    assert_eq!(
        query(&mut connection, &["SET", "a", "1"]).await,
        Ok(redis::Value::Okay)
    );
    let persistence = node
        .state
        .persistence()
        .expect("disc mode has a log")
        .clone();

    persistence.inject_fault(WriterFault::Fail);
    // In flight when the disc fails: admitted and applied, then its log write fails. The
    // client cannot be told it succeeded; the write stays and is logged once the disc heals.
    assert_misconf(
        query(&mut connection, &["SET", "b", "2"]).await,
        "write in flight",
    );
    // From now on writes are refused before they are applied.
    assert_misconf(query(&mut connection, &["SET", "c", "3"]).await, "SET");
    assert_misconf(query(&mut connection, &["DEL", "a"]).await, "DEL");
    assert_misconf(query(&mut connection, &["INCR", "n"]).await, "INCR");
    assert_misconf(
        query(&mut connection, &["EXPIRE", "a", "100"]).await,
        "EXPIRE",
    );
    assert_eq!(
        query(&mut connection, &["GET", "c"]).await,
        Ok(redis::Value::Nil)
    );
    assert_eq!(
        query(&mut connection, &["GET", "n"]).await,
        Ok(redis::Value::Nil)
    );
    assert_eq!(query(&mut connection, &["GET", "a"]).await, Ok(bulk("1")));
    assert_eq!(
        query(&mut connection, &["TTL", "a"]).await,
        Ok(redis::Value::Int(-1))
    );
    assert_eq!(query(&mut connection, &["GET", "b"]).await, Ok(bulk("2")));
    let redis::Value::BulkString(info) = query(&mut connection, &["INFO", "persistence"])
        .await
        .expect("INFO")
    else {
        panic!("INFO is a bulk string");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("\r\naof_last_write_status:err\r\n"), "{info}");

    // The writer retries every second; once the disc is back the failure clears.
    persistence.inject_fault(WriterFault::None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while persistence.check_writable().is_err() {
        assert!(Instant::now() < deadline, "the log never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        query(&mut connection, &["SET", "c", "3"]).await,
        Ok(redis::Value::Okay)
    );
    drop(connection);
    drop(persistence);
    node.shutdown().await.expect("clean shutdown");

    let node = disc_node(&dir).await;
    let mut connection = client(&node).await;
    assert_eq!(query(&mut connection, &["GET", "a"]).await, Ok(bulk("1")));
    assert_eq!(query(&mut connection, &["GET", "b"]).await, Ok(bulk("2")));
    assert_eq!(query(&mut connection, &["GET", "c"]).await, Ok(bulk("3")));
    assert_eq!(
        query(&mut connection, &["GET", "n"]).await,
        Ok(redis::Value::Nil)
    );
    assert_eq!(
        query(&mut connection, &["DBSIZE"]).await,
        Ok(redis::Value::Int(3))
    );
    drop(connection);
    node.shutdown().await.expect("clean shutdown");
}
