//! One RESP client's connection: read what it sent, execute every complete request, wait for
//! what the writes' receipts ask (the write-ahead log, the peers' acknowledgements), answer
//! with one write; until it quits, fails, idles out, or the node stops serving. A subscribed
//! connection also writes out the messages published to it (in order with its replies), and
//! is closed when it falls behind its output buffer limit. A Lua script runs off the
//! connection's thread holding the transaction gate exclusively, so other clients can be told
//! `BUSY` once it runs past `busy-reply-threshold`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::commands::{execute, flags, lookup, ClientState};
use crate::node::write_ack::WriteAcks;
use crate::node::NodeState;
use crate::protocol::{Limits, ProtocolError, RequestParser};

/// Replies buffered beyond this are written before parsing more requests of a pipeline.
const MAX_PENDING_OUTPUT: usize = 1 << 20;

/// Serves one RESP client until it quits, fails, or `stop` (the node stops serving) is
/// cancelled; runs on a connection thread ([`super::io_threads::IoThreads`]).
pub async fn serve_connection(
    state: &Arc<NodeState>,
    mut socket: TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
) {
    let authenticated = state.password.is_none();
    let mut client = ClientState::new(state.next_client_id(), authenticated, peer.to_string());
    let _subscriptions = Unsubscribe {
        state,
        client: client.id,
    };
    let mut parser = RequestParser::new(Limits::default());
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut args = Vec::new();
    let idle = state.config.client_idle_timeout;
    let mut acks = WriteAcks::new(state);
    tracing::debug!(%peer, client = client.id, "client connected");
    loop {
        // Execute every complete request in the buffer, then answer them with one write.
        let mut executed = 0;
        loop {
            let (end, ran) = process_batch(
                state,
                &mut client,
                &mut parser,
                &mut input,
                &mut args,
                &mut output,
                &mut acks,
            );
            executed += ran;
            match end {
                BatchEnd::NeedInput | BatchEnd::Close => break,
                BatchEnd::Script => {
                    let Some(done) = run_script(state, &mut client, args.clone()).await else {
                        tracing::error!(%peer, client = client.id, "closing client: its script's thread failed");
                        return;
                    };
                    executed += 1;
                    answer(&mut client, done, &mut output, &mut acks);
                    // What the script published to this very connection follows its reply,
                    // as in Redis 7.2 (and as after EXEC).
                    drain_messages(&client, &mut output);
                }
                BatchEnd::OutputFull => {
                    acks.settle(state, &mut output).await;
                    if socket.write_all(&output).await.is_err() {
                        return;
                    }
                    output.clear();
                }
                BatchEnd::ProtocolError(error) => {
                    state
                        .metrics
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, client = client.id, %error, "closing client: protocol error");
                    output
                        .extend_from_slice(format!("-ERR Protocol error: {error}\r\n").as_bytes());
                    let _ = socket.write_all(&output).await;
                    return;
                }
            }
        }
        state.metrics.flush(&mut client.metrics);
        if drain_messages(&client, &mut output) {
            tracing::info!(%peer, client = client.id, "closing client: over the pubsub output buffer limit");
            let _ = socket.write_all(&output).await;
            return;
        }
        if !output.is_empty() {
            let waited = acks.settle(state, &mut output).await;
            if executed == 1 && !waited {
                // One request per read: answer after every other ready connection on this
                // thread had its turn, as Redis's event loop writes its replies once per
                // iteration, so the client finds them together instead of being woken for
                // each one (docs/benchmarks.md: un-pipelined SET at 1.00 of Redis this way, 0.86
                // when answered at once).
                // A pipelining client sends a burst and gets one back already; making it
                // wait cost `SET -d 1024 -P 16` a tenth. Waiting for the log or for
                // replication already let the others run.
                yield_to_queued().await;
            }
            if socket.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
            if output.capacity() > 4 * MAX_PENDING_OUTPUT {
                output = BytesMut::with_capacity(16 * 1024);
            }
        }
        if client.close || stop.is_cancelled() {
            return;
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        if input.is_empty() && input.capacity() > 4 * READ_AHEAD_LIMIT {
            input = BytesMut::with_capacity(16 * 1024);
        }
        let spare = input.capacity() - input.len();
        let subscriber = client.subscriber.clone();
        // A subscriber waits for messages as much as for requests: never idle.
        let idle = if client.subscriptions > 0 { 0 } else { idle };
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            () = wait_for_messages(subscriber.as_deref()) => continue,
            read = read_with_idle_timeout(&mut socket, &mut input, idle) => read,
        };
        match read {
            Ok(0) => return,
            Ok(read) => {
                if read == spare {
                    read_rest_of_burst(&socket, &mut input, READ_AHEAD_LIMIT);
                }
            }
            Err(ReadEnd::Idle) => {
                tracing::debug!(%peer, client = client.id, "closing idle client");
                return;
            }
            Err(ReadEnd::Io) => return,
        }
    }
}

/// [`read_rest_of_burst`] stops once the buffer holds this much.
const READ_AHEAD_LIMIT: usize = 256 * 1024;

/// After a read that filled the buffer, reads what else the client has already sent, without
/// waiting, until the socket is drained or the buffer holds `limit` bytes. Redis reads
/// as much as its query buffer holds for the same reason: a burst executed together is answered
/// with one write. Reading 16 KiB at a time answered a pipeline of sixteen 1 KiB SETs (17 KB)
/// in two writes, so the client paid a second read and event for every pipeline
/// (docs/benchmarks.md: 50k TCP segments per 200k SETs against Redis's 25.5k).
fn read_rest_of_burst(socket: &TcpStream, input: &mut BytesMut, limit: usize) {
    while input.len() < limit {
        input.reserve(input.len().max(16 * 1024));
        let spare = input.capacity() - input.len();
        match socket.try_read_buf(input) {
            Ok(read) if read == spare => continue,
            // A short read drained the socket; an error or the end of the stream shows at the
            // next read, after the requests already read are answered.
            _ => return,
        }
    }
}

/// Why [`process_batch`] stopped.
enum BatchEnd {
    /// The buffer holds no complete request.
    NeedInput,
    /// QUIT: write the replies and close.
    Close,
    /// Replies reached [`MAX_PENDING_OUTPUT`]: write them, then continue.
    OutputFull,
    /// The request in `args` runs a script: run it off this thread, then continue.
    Script,
    /// A malformed request.
    ProtocolError(ProtocolError),
}

/// Runs the complete requests in `input`, encoding replies into `output`; returns why it
/// stopped and how many requests it ran. The batch holds the
/// node's transaction gate for reading; an EXEC takes it for writing, so a transaction's
/// commands never interleave with other clients' commands.
fn process_batch(
    state: &NodeState,
    client: &mut ClientState,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    args: &mut Vec<bytes::Bytes>,
    output: &mut BytesMut,
    acks: &mut WriteAcks,
) -> (BatchEnd, usize) {
    client.metrics.begin_batch();
    let Some(gate) = gate_unless_busy(state) else {
        return busy_batch(state, client, parser, input, args, output);
    };
    let mut gate = Some(gate);
    let mut executed = 0;
    loop {
        match parser.parse(input, args) {
            Ok(true) => {
                drain_messages(client, output);
                if client.multi.is_none() && runs_script(args) {
                    return (BatchEnd::Script, executed);
                }
                let done = if client.multi.is_some() && args[0].eq_ignore_ascii_case(b"exec") {
                    drop(gate.take());
                    let exclusive = state.transaction_gate.write();
                    let done = execute(state, client, args);
                    drop(exclusive);
                    gate = Some(state.transaction_gate.read());
                    done
                } else {
                    execute(state, client, args)
                };
                executed += 1;
                answer(client, done, output, acks);
                if client.close {
                    return (BatchEnd::Close, executed);
                }
                if output.len() >= MAX_PENDING_OUTPUT {
                    return (BatchEnd::OutputFull, executed);
                }
            }
            Ok(false) => return (BatchEnd::NeedInput, executed),
            Err(error) => return (BatchEnd::ProtocolError(error), executed),
        }
    }
}

/// Writes a command's reply into `output` and notes what its receipt waits for; a reply
/// `CLIENT REPLY OFF`/`SKIP` stops is left out but for its pushes, and waits for nothing.
fn answer(
    client: &mut ClientState,
    done: crate::commands::Executed,
    output: &mut BytesMut,
    acks: &mut WriteAcks,
) {
    if client.take_reply() {
        let start = output.len();
        done.reply.encode(client.protocol, output);
        acks.note(start, output.len(), done.receipt);
    } else {
        done.reply.encode_pushes(client.protocol, output);
    }
}

/// Takes the node's transaction gate for reading, unless a script has been running past the
/// busy threshold (`None`: the batch is answered `BUSY` without waiting for it).
fn gate_unless_busy(state: &NodeState) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
    loop {
        if let Some(gate) = state
            .transaction_gate
            .try_read_for(Duration::from_millis(5))
        {
            return Some(gate);
        }
        if state.scripts.busy() {
            return None;
        }
    }
}

/// Whether a request runs a Lua script (EVAL and its kin).
fn runs_script(args: &[bytes::Bytes]) -> bool {
    args.first()
        .and_then(|name| lookup(name))
        .is_some_and(|index| crate::commands::commands()[index].flags & flags::SCRIPT != 0)
}

/// Whether a request may run while a script is busy: `SCRIPT KILL`, and what only touches the
/// connection (`AUTH`, `HELLO`, `QUIT`), as Redis's `allow-busy` commands.
fn allowed_while_busy(args: &[bytes::Bytes]) -> bool {
    let Some(index) = args.first().and_then(|name| lookup(name)) else {
        return false;
    };
    let spec = crate::commands::commands()[index];
    spec.flags & flags::ALLOW_BUSY != 0
        || (spec.name == "script" && args.len() == 2 && args[1].eq_ignore_ascii_case(b"kill"))
}

/// Answers every complete request while a script is busy: `BUSY`, except for the requests
/// [`allowed_while_busy`], which run without the gate.
fn busy_batch(
    state: &NodeState,
    client: &mut ClientState,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    args: &mut Vec<bytes::Bytes>,
    output: &mut BytesMut,
) -> (BatchEnd, usize) {
    let mut executed = 0;
    loop {
        match parser.parse(input, args) {
            Ok(true) => {
                executed += 1;
                let reply = if allowed_while_busy(args) {
                    execute(state, client, args).reply
                } else {
                    crate::scripting::BUSY
                };
                if client.take_reply() {
                    reply.encode(client.protocol, output);
                } else {
                    reply.encode_pushes(client.protocol, output);
                }
                if client.close {
                    return (BatchEnd::Close, executed);
                }
            }
            Ok(false) => return (BatchEnd::NeedInput, executed),
            Err(error) => return (BatchEnd::ProtocolError(error), executed),
        }
    }
}

/// Runs the script request `args` on the blocking pool, holding the transaction gate
/// exclusively, while this thread goes on serving its other connections; `None` when the
/// script's thread failed (the client state went with it).
async fn run_script(
    state: &Arc<NodeState>,
    client: &mut ClientState,
    args: Vec<bytes::Bytes>,
) -> Option<crate::commands::Executed> {
    let placeholder = ClientState::new(client.id, client.authenticated, client.address.clone());
    let mut owned = std::mem::replace(client, placeholder);
    let shared = state.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let exclusive = shared.transaction_gate.write();
        let done = execute(&shared, &mut owned, &args);
        drop(exclusive);
        (owned, done)
    })
    .await;
    match ran {
        Ok((owned, done)) => {
            *client = owned;
            Some(done)
        }
        Err(error) => {
            tracing::error!(%error, "a script's thread failed");
            None
        }
    }
}

/// Moves the messages published to a subscribed connection into its output, so they go out
/// before the replies of the requests that follow; returns whether the connection is over its
/// output buffer limit and must close.
fn drain_messages(client: &ClientState, output: &mut BytesMut) -> bool {
    client
        .subscriber
        .as_ref()
        .is_some_and(|subscriber| subscriber.drain_into(output))
}

/// Resolves when a message was published to the connection; never without a subscriber.
async fn wait_for_messages(subscriber: Option<&crate::pubsub::Subscriber>) {
    match subscriber {
        Some(subscriber) => subscriber.ready().await,
        None => std::future::pending().await,
    }
}

/// Drops a connection's subscriptions when it ends, however it ends.
struct Unsubscribe<'a> {
    state: &'a NodeState,
    client: u64,
}

impl Drop for Unsubscribe<'_> {
    fn drop(&mut self) {
        self.state.pubsub.remove_client(self.client);
    }
}

enum ReadEnd {
    Idle,
    Io,
}

async fn read_with_idle_timeout(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    idle_seconds: u64,
) -> Result<usize, ReadEnd> {
    if idle_seconds == 0 {
        return socket.read_buf(input).await.map_err(|_| ReadEnd::Io);
    }
    match tokio::time::timeout(Duration::from_secs(idle_seconds), socket.read_buf(input)).await {
        Ok(result) => result.map_err(|_| ReadEnd::Io),
        Err(_) => Err(ReadEnd::Idle),
    }
}

/// Lets every other task already queued on this thread run once, then resumes: the task
/// wakes itself and goes to the back of the thread's run queue.
///
/// Unlike `tokio::task::yield_now`, which defers the task until the runtime has polled its
/// I/O driver, this costs no `epoll_wait`: a round of ready connections on a RESP thread is one
/// poll of the driver, as in Redis's event loop, instead of two (un-pipelined SETs: 0.74
/// `epoll_wait` calls per request, Redis 0.69-0.74; 1.18 with `yield_now`;
/// docs/benchmarks.md).
async fn yield_to_queued() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair of loopback sockets.
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_takes_the_rest_of_the_burst() {
        let (mut client, server) = pair().await;
        let burst: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&burst).await.expect("write");
        client.flush().await.expect("flush");
        server.readable().await.expect("readable");
        // Let the whole burst reach the server's receive queue.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut input = BytesMut::with_capacity(16 * 1024);
        let spare = input.capacity() - input.len();
        let read = server.try_read_buf(&mut input).expect("first read");
        assert_eq!(read, spare, "the first read fills the buffer");
        read_rest_of_burst(&server, &mut input, READ_AHEAD_LIMIT);
        assert_eq!(&input[..], &burst[..]);
    }

    #[tokio::test]
    async fn reading_the_rest_of_a_burst_stops_at_the_limit() {
        let (mut client, server) = pair().await;
        let limit = 64 * 1024;
        let burst = vec![7u8; 4 * limit];
        let writer = tokio::spawn(async move {
            client.write_all(&burst).await.expect("write");
            client
        });
        server.readable().await.expect("readable");
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut input = BytesMut::with_capacity(16 * 1024);
        server.try_read_buf(&mut input).expect("first read");
        read_rest_of_burst(&server, &mut input, limit);
        // The last read may take a whole doubled buffer past the limit, never more.
        assert!(
            (limit..2 * limit).contains(&input.len()),
            "read {} bytes",
            input.len()
        );
        drop(server);
        let _ = writer.await;
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_yielding_task_resumes_after_every_task_queued_before_it() {
        let order = Arc::new(Mutex::new(Vec::new()));
        runtime().block_on(async {
            let mut tasks = Vec::new();
            for id in 0..3 {
                let order = order.clone();
                tasks.push(tokio::spawn(async move {
                    order.lock().expect("order").push(format!("read {id}"));
                    yield_to_queued().await;
                    order.lock().expect("order").push(format!("write {id}"));
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
        });
        assert_eq!(
            *order.lock().expect("order"),
            ["read 0", "read 1", "read 2", "write 0", "write 1", "write 2"]
        );
    }

    #[test]
    fn a_yielding_task_resumes_before_the_runtime_polls_for_events() {
        // A timer that has expired while the task ran fires only when the runtime next polls
        // its driver; `tokio::task::yield_now` would let it fire first.
        let order = Arc::new(Mutex::new(Vec::new()));
        runtime().block_on(async {
            let timer_order = order.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                timer_order.lock().expect("order").push("timer");
            });
            tokio::task::yield_now().await; // the timer task registers its deadline
            let task_order = order.clone();
            let task = tokio::spawn(async move {
                std::thread::sleep(Duration::from_millis(20));
                yield_to_queued().await;
                task_order.lock().expect("order").push("resumed");
            });
            task.await.expect("task");
            timer.await.expect("timer");
        });
        assert_eq!(*order.lock().expect("order"), ["resumed", "timer"]);
    }
}
