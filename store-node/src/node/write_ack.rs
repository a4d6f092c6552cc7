//! Answering writes only once they hold what their receipts ask: durable in the write-ahead
//! log (disc mode) and acknowledged by `--write-ack` peers (replication). [`WriteAcks`] does it
//! for a RESP connection's batch of replies, [`settle`] for one HTTP write.

use std::time::Duration;

use bytes::BytesMut;

use super::state::NodeState;
use crate::config;
use crate::replication::{ReplicationError, WriteAck};
use crate::store::WriteReceipt;

/// The wait of one connection before it answers writes: what the writes' receipts ask, that is
/// durability in the write-ahead log (disc mode,
/// [`crate::persistence::Persistence::wait_durable`]) and the `--write-ack` acknowledgements
/// of replication. It knows which replies in the output buffer answer such writes. Inert (one
/// branch per command) in RAM mode without replication or with `--write-ack none`.
#[derive(Debug)]
pub struct WriteAcks {
    level: Option<WriteAck>,
    durable: bool,
    timeout: Duration,
    /// What the answered writes wait for, merged.
    receipt: WriteReceipt,
    spans: Vec<(usize, usize)>,
}

impl WriteAcks {
    /// The wait for a connection of this node.
    pub fn new(state: &NodeState) -> WriteAcks {
        let level = match state.config.write_ack {
            config::WriteAck::None => None,
            config::WriteAck::One => Some(WriteAck::One),
            config::WriteAck::All => Some(WriteAck::All),
        };
        WriteAcks {
            level: level.filter(|_| state.replication().is_some()),
            durable: state.persistence().is_some(),
            timeout: Duration::from_millis(state.config.write_ack_timeout_ms),
            receipt: WriteReceipt::NONE,
            spans: Vec::new(),
        }
    }

    /// Whether writes wait at all.
    pub fn enabled(&self) -> bool {
        self.level.is_some() || self.durable
    }

    /// Notes the receipt of a command whose reply was encoded at `start..end` of the output.
    pub fn note(&mut self, start: usize, end: usize, receipt: WriteReceipt) {
        if !self.enabled() {
            return;
        }
        let waits = WriteReceipt {
            replicated: receipt.replicated.filter(|_| self.level.is_some()),
            logged: if self.durable { receipt.logged } else { 0 },
            log_failed: self.durable && receipt.log_failed,
        };
        if !waits.is_empty() {
            self.receipt.merge(waits);
            self.spans.push((start, end));
        }
    }

    /// Waits (holding no lock) until the writes answered in `output` are durable in the log
    /// and acknowledged by replication. When the log failed, each write's reply becomes the
    /// log's error (`MISCONF ...`); when the acknowledgements do not come in time, it becomes
    /// the replication error (`NOREPLICAS ...`). The writes stay applied (and still
    /// replicate). Returns whether it waited (for the log or for replication), which lets
    /// every other ready connection on the thread run first.
    pub async fn settle(&mut self, state: &NodeState, output: &mut BytesMut) -> bool {
        if self.spans.is_empty() {
            return false;
        }
        let mut waited = false;
        let mut failure = None;
        let receipt = std::mem::take(&mut self.receipt);
        if let Some(persistence) = state.persistence() {
            let result = if receipt.log_failed {
                Err(persistence
                    .check_writable()
                    .err()
                    .map(|error| error.to_string())
                    .unwrap_or_else(|| "MISCONF Errors writing to the write-ahead log".to_string()))
            } else if receipt.logged > 0 {
                waited = true;
                persistence
                    .wait_durable(receipt.logged)
                    .await
                    .map_err(|error| error.to_string())
            } else {
                Ok(())
            };
            if let Err(text) = result {
                let text = if text.starts_with("MISCONF") {
                    text
                } else {
                    format!("MISCONF {text}")
                };
                failure = Some(format!("-{text}\r\n"));
            }
        }
        if let (None, Some((first, last))) = (&failure, receipt.replicated) {
            if let (Some(level), Some(replication)) = (self.level, state.replication()) {
                waited = true;
                if let Err(error) = replication
                    .wait_writes_acked(first, last, level, self.timeout)
                    .await
                {
                    failure = Some(match error {
                        ReplicationError::NotEnoughReplicas { .. } => format!("-{error}\r\n"),
                        other => format!("-ERR {other}\r\n"),
                    });
                }
            }
        }
        if let Some(line) = failure {
            let mut patched = BytesMut::with_capacity(output.len());
            let mut position = 0;
            for (start, end) in &self.spans {
                patched.extend_from_slice(&output[position..*start]);
                patched.extend_from_slice(line.as_bytes());
                position = *end;
            }
            patched.extend_from_slice(&output[position..]);
            *output = patched;
        }
        self.spans.clear();
        waited
    }
}

/// Waits for what `receipt` asks after an HTTP write: the write-ahead log (disc mode), then
/// (bounded) the write-ack level of the node. `Err` carries the log's (`MISCONF ...`) or
/// replication's error text.
pub async fn settle(state: &NodeState, receipt: WriteReceipt) -> Result<(), String> {
    if let Some(persistence) = state.persistence() {
        if receipt.log_failed {
            return Err(persistence
                .check_writable()
                .err()
                .map(|error| error.to_string())
                .unwrap_or_else(|| "MISCONF Errors writing to the write-ahead log".to_string()));
        }
        if receipt.logged > 0 {
            persistence
                .wait_durable(receipt.logged)
                .await
                .map_err(|error| error.to_string())?;
        }
    }
    let Some(replication) = state.replication() else {
        return Ok(());
    };
    let level = match state.config.write_ack {
        config::WriteAck::None => return Ok(()),
        config::WriteAck::One => WriteAck::One,
        config::WriteAck::All => WriteAck::All,
    };
    let Some((first, last)) = receipt.replicated else {
        return Ok(());
    };
    replication
        .wait_writes_acked(
            first,
            last,
            level,
            Duration::from_millis(state.config.write_ack_timeout_ms),
        )
        .await
        .map_err(|error| error.to_string())
}
