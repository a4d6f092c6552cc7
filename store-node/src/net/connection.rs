//! One RESP client's connection: read what it sent, execute every complete request, wait for
//! what the writes' receipts ask (the write-ahead log, the peers' acknowledgements), answer
//! with one write; until it quits, fails, idles out, or the node stops serving. Its buffers
//! count as used memory, and a request declaring more bytes than fit under the memory limit is
//! answered `OOM` without being buffered (docs/memory.md). A subscribed connection also writes
//! out the messages published to it (in order with its replies), and is closed when it falls
//! behind its output buffer limit ([`super::published`]). A Lua script runs off the
//! connection's thread holding the transaction gate exclusively, so other clients can be told
//! `BUSY` once it runs past `busy-reply-threshold` ([`super::script_runs`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::published::{drain_messages, wait_for_messages, Unsubscribe};
use super::script_runs::{allowed_while_busy, gate_unless_busy, run_script, runs_script};
use super::stream::ClientStream;
use crate::commands::{execute, execute_found, lookup, ClientState, Executed, OOM};
use crate::node::write_ack::WriteAcks;
use crate::node::NodeState;
use crate::protocol::{Parsed, ProtocolError, RequestParser};
use crate::store::MemoryEngine;

/// Replies buffered beyond this are written before parsing more requests of a pipeline.
const MAX_PENDING_OUTPUT: usize = 1 << 20;

/// Requests declaring up to this many argument bytes are never refused while parsing (reads and
/// deletes must work above the watermark; the command's own memory check applies to them).
const ALWAYS_PARSED_BYTES: u64 = 64 * 1024;

/// Reports one connection's buffer capacity to the engine's used memory, and takes it back
/// when the connection ends.
struct BufferGauge<'a> {
    engine: &'a MemoryEngine,
    counted: usize,
}

impl BufferGauge<'_> {
    fn update(&mut self, input: &BytesMut, output: &BytesMut) {
        let now = input.capacity() + output.capacity();
        if now != self.counted {
            self.engine
                .add_buffer_bytes(now as i64 - self.counted as i64);
            self.counted = now;
        }
    }
}

impl Drop for BufferGauge<'_> {
    fn drop(&mut self) {
        self.engine.add_buffer_bytes(-(self.counted as i64));
    }
}

/// Bound on a TLS client's handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one RESP client, over TLS when it came to the TLS port, until it quits, fails, or
/// `stop` (the node stops serving) is cancelled; runs on a connection thread
/// ([`super::io_threads::IoThreads`]). A TLS client gets the certificate current at its
/// handshake.
pub async fn serve_connection(
    state: &Arc<NodeState>,
    socket: TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
    tls: bool,
) {
    if !tls {
        return serve(state, socket, peer, stop).await;
    }
    let Some(context) = state.security.tls.as_ref() else {
        return;
    };
    let handshake = tokio::time::timeout(
        TLS_HANDSHAKE_TIMEOUT,
        context.resp_acceptor().accept(socket),
    );
    let outcome = tokio::select! {
        _ = stop.cancelled() => return,
        outcome = handshake => outcome,
    };
    match outcome {
        Ok(Ok(stream)) => serve(state, stream, peer, stop).await,
        Ok(Err(error)) => {
            state
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %error, "TLS handshake failed");
        }
        Err(_) => {
            state
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Writes `output`, unless `close` is cancelled first (the client was picked by the
/// `maxmemory-clients` cap while it does not read its replies); `false` when the connection
/// must end.
async fn write_out<S: ClientStream>(
    socket: &mut S,
    output: &[u8],
    close: &CancellationToken,
) -> bool {
    tokio::select! {
        biased;
        written = async {
            socket.write_all(output).await?;
            // TLS may hold the end of what it encrypted until flushed.
            socket.flush().await
        } => written.is_ok(),
        () = close.cancelled() => false,
    }
}

async fn serve<S: ClientStream>(
    state: &Arc<NodeState>,
    mut socket: S,
    peer: SocketAddr,
    stop: &CancellationToken,
) {
    let authenticated = state.password.is_none();
    let mut client = ClientState::new(state.next_client_id(), authenticated, peer.to_string());
    let _subscriptions = Unsubscribe {
        state,
        client: client.id,
    };
    let limits = &state.client_limits;
    let mut parser = RequestParser::new(limits.request_limits());
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut args = Vec::new();
    let idle = state.config.client_idle_timeout;
    let mut acks = WriteAcks::new(state);
    let mut gauge = BufferGauge {
        engine: &state.engine,
        counted: 0,
    };
    gauge.update(&input, &output);
    // A request parsed into `args` and not executed yet: it waited for room in the log.
    let mut pending = false;
    // Cancelled when the node stops serving, or when the client-memory cap picks this client.
    let close = stop.child_token();
    let buffers = limits.register(client.id, client.address.clone(), close.clone());
    let memory_limit = state.engine.memory().limit_bytes;
    tracing::debug!(%peer, client = client.id, "client connected");
    // One wait for the close, kept across reads: a new one per read registered a waiter with
    // the token and removed it again, two locks per read (GET -P16 paid about 70 instructions
    // per request for it).
    let closed = close.cancelled();
    tokio::pin!(closed);
    loop {
        parser.set_limits(limits.request_limits());
        // Execute every complete request in the buffer, then answer them with one write.
        let mut executed = 0;
        loop {
            let (end, ran) = process_batch(
                state,
                &mut client,
                &mut parser,
                &mut input,
                &mut args,
                &mut pending,
                &mut output,
                &mut acks,
            );
            executed += ran;
            gauge.update(&input, &output);
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
                    buffers.update((input.capacity() + output.capacity()) as u64, memory_limit);
                    if !write_out(&mut socket, &output, &close).await {
                        return;
                    }
                    output.clear();
                }
                BatchEnd::LogFull => {
                    // The replies so far go out first; then this connection alone waits, and
                    // the thread serves its other connections meanwhile.
                    acks.settle(state, &mut output).await;
                    if !output.is_empty() {
                        if socket.write_all(&output).await.is_err() {
                            return;
                        }
                        output.clear();
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        () = crate::node::disc::wait_for_log_room(state) => {}
                    }
                }
                BatchEnd::QueryBufferLimit => {
                    tracing::info!(%peer, client = client.id, limit = state.client_limits.query_buffer_limit(), "closing client that reached max query buffer length (MULTI queue and input)");
                    acks.settle(state, &mut output).await;
                    let _ = socket.write_all(&output).await;
                    return;
                }
                BatchEnd::ProtocolError(error) => {
                    state
                        .metrics
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%peer, client = client.id, %error, "closing client: protocol error");
                    output
                        .extend_from_slice(format!("-ERR Protocol error: {error}\r\n").as_bytes());
                    let _ = write_out(&mut socket, &output, &close).await;
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
            if !write_out(&mut socket, &output, &close).await {
                return;
            }
            output.clear();
            if output.capacity() > 4 * MAX_PENDING_OUTPUT {
                output = BytesMut::with_capacity(16 * 1024);
            }
        }
        if client.close || close.is_cancelled() {
            return;
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        if input.is_empty() && input.capacity() > 4 * READ_AHEAD_LIMIT {
            input = BytesMut::with_capacity(16 * 1024);
        }
        buffers.update((input.capacity() + output.capacity()) as u64, memory_limit);
        let spare = input.capacity() - input.len();
        let subscriber = client.subscriber.clone();
        // A subscriber waits for messages as much as for requests: never idle.
        let idle = if client.subscriptions > 0 { 0 } else { idle };
        let read = tokio::select! {
            () = &mut closed => return,
            () = wait_for_messages(subscriber.as_deref()) => continue,
            read = read_with_idle_timeout(&mut socket, &mut input, idle) => read,
        };
        match read {
            Ok(0) => return,
            Ok(read) => {
                if read == spare {
                    read_rest_of_burst(&mut socket, &mut input, READ_AHEAD_LIMIT);
                }
                gauge.update(&input, &output);
            }
            Err(ReadEnd::Idle) => {
                tracing::debug!(%peer, client = client.id, "closing idle client");
                return;
            }
            Err(ReadEnd::Io) => return,
        }
        if input.len() as u64 > limits.query_buffer_limit() {
            // Redis closes such a client without a reply.
            limits.count_query_buffer_disconnection();
            tracing::warn!(%peer, client = client.id, query_buffer = input.len(), limit = limits.query_buffer_limit(), "closing client that reached max query buffer length");
            return;
        }
        buffers.update((input.capacity() + output.capacity()) as u64, memory_limit);
        if close.is_cancelled() {
            return;
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
fn read_rest_of_burst<S: ClientStream>(socket: &mut S, input: &mut BytesMut, limit: usize) {
    while input.len() < limit {
        input.reserve(input.len().max(16 * 1024));
        let spare = input.capacity() - input.len();
        match socket.try_read_now(input) {
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
    /// The next request may write and the write-ahead log's queue is full (a slow disc): it
    /// stays parsed (`pending`) while the connection waits for room.
    LogFull,
    /// The request in `args` runs a script: run it off this thread, then continue.
    Script,
    /// A malformed request.
    ProtocolError(ProtocolError),
    /// The MULTI queue and the unparsed input passed `--client-query-buffer-limit`: write the
    /// replies so far and close.
    QueryBufferLimit,
}

/// Runs the complete requests in `input` (after the `pending` one in `args`, if any),
/// encoding replies into `output`; returns why it stopped and how many requests it ran. The
/// batch holds the node's transaction gate for reading; an EXEC takes it for writing, so a
/// transaction's commands never interleave with other clients' commands. A request that may
/// write while the write-ahead log is full is left `pending`, unexecuted, for the caller to
/// wait for room without holding the gate or blocking the thread.
#[allow(clippy::too_many_arguments)]
fn process_batch(
    state: &NodeState,
    client: &mut ClientState,
    parser: &mut RequestParser,
    input: &mut BytesMut,
    args: &mut Vec<bytes::Bytes>,
    pending: &mut bool,
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
        // Until it authenticates, a client may send only small requests (Redis's limits); an
        // AUTH lifts them for the next request of the same pipeline.
        parser.set_authenticated(client.authenticated);
        let parsed = if std::mem::take(pending) {
            // It waited for room once: it runs now even if the log filled up again.
            Ok(Parsed::Request)
        } else {
            let room = state.engine.request_room().max(ALWAYS_PARSED_BYTES);
            match parser.parse_within(input, args, room) {
                Ok(Parsed::Request)
                    if crate::node::disc::log_full(state)
                        && crate::commands::may_write(client, args) =>
                {
                    *pending = true;
                    return (BatchEnd::LogFull, executed);
                }
                parsed => parsed,
            }
        };
        match parsed {
            Ok(Parsed::Refused) => {
                // Its bytes never fit: answered like a refused write, in order.
                state.metrics.oom_rejections.fetch_add(1, Ordering::Relaxed);
                if client.multi.is_some() {
                    client.multi_failed = true;
                }
                executed += 1;
                let done: Executed = OOM.into();
                answer(client, done, output, acks);
            }
            Ok(Parsed::Request) => {
                drain_messages(client, output);
                // Looked up once for both questions: a script, then which command to run.
                let found = args.first().and_then(|name| lookup(name));
                if client.multi.is_none() && runs_script(found) {
                    return (BatchEnd::Script, executed);
                }
                let done = if client.multi.is_some() && args[0].eq_ignore_ascii_case(b"exec") {
                    drop(gate.take());
                    let exclusive = state.transaction_gate.write();
                    let done = execute_found(state, client, args, found);
                    drop(exclusive);
                    gate = Some(state.transaction_gate.read());
                    done
                } else {
                    execute_found(state, client, args, found)
                };
                executed += 1;
                if client.multi.is_some()
                    && (client.multi_bytes + input.len()) as u64
                        > state.client_limits.query_buffer_limit()
                {
                    // Redis's rule: the MULTI queue counts with the unparsed input against the
                    // query buffer limit, and the client is closed without a reply.
                    state.client_limits.count_query_buffer_disconnection();
                    return (BatchEnd::QueryBufferLimit, executed);
                }
                answer(client, done, output, acks);
                if client.close {
                    return (BatchEnd::Close, executed);
                }
                if output.len() >= MAX_PENDING_OUTPUT {
                    return (BatchEnd::OutputFull, executed);
                }
            }
            Ok(Parsed::Incomplete) => return (BatchEnd::NeedInput, executed),
            Err(error) => return (BatchEnd::ProtocolError(error), executed),
        }
    }
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
        parser.set_authenticated(client.authenticated);
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

enum ReadEnd {
    Idle,
    Io,
}

async fn read_with_idle_timeout<S: ClientStream>(
    socket: &mut S,
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
        let (mut client, mut server) = pair().await;
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
        read_rest_of_burst(&mut server, &mut input, READ_AHEAD_LIMIT);
        assert_eq!(&input[..], &burst[..]);
    }

    #[tokio::test]
    async fn reading_the_rest_of_a_burst_stops_at_the_limit() {
        let (mut client, mut server) = pair().await;
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
        read_rest_of_burst(&mut server, &mut input, limit);
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
