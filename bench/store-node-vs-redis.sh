#!/usr/bin/env bash
# Benchmark: store-node against redis-server on this machine, in the same run, alternating.
#
# For every row both servers get the same redis-benchmark flags, ROUNDS times each, alternating
# (redis, store-node, redis, ...); the table shows the median throughput and latencies, the
# server's CPU time per request (all its threads, from /proc/PID/task/*/schedstat), and the
# ratios store-node / redis. Then resident memory per session for N sessions on both: string
# sessions of 32 B and 1 KiB, and 5-field hash sessions on a single node and on a member of a
# 2-node cluster (which keeps a stamp per field, what merging concurrent writes needs).
# Absolute numbers on a shared 2-core machine swing; the ratio is what to read.
#
# Usage: bench/store-node-vs-redis.sh [--quick]
#   ROUNDS (default 3), REQUESTS (default 200000), CLIENTS (50), SESSIONS (default 1000000),
#   NODE_ARGS (extra store-node flags, e.g. "--worker-threads 1"; default none),
#   ONLY (an extended regex: run only the throughput rows whose label matches; skips memory),
#   SUBJECT=redis-server (a control run: a second redis-server takes store-node's place, so the
#   table shows how far two runs of the same server differ on this machine; skips memory)
#   REFERENCE=PATH (another store-node binary, e.g. from bench/build-rev.sh main~1, takes
#   redis-server's place: the ratios are this build against that one)
source "$(dirname "$0")/../hack/lib.sh"
cd "$ROOT"

ROUNDS=${ROUNDS:-3}; REQUESTS=${REQUESTS:-200000}; CLIENTS=${CLIENTS:-50}; SESSIONS=${SESSIONS:-1000000}
if [ "${1:-}" = "--quick" ]; then ROUNDS=1; REQUESTS=50000; SESSIONS=100000; fi
# start_redis or start_node, defined below.
case "${SUBJECT:=store-node}" in
  store-node) start_subject=start_node ;;
  redis-server) start_subject=start_redis ;;
  *) echo "SUBJECT must be store-node or redis-server, not '$SUBJECT'" >&2; exit 2 ;;
esac

BENCH_PACKAGES="redis-server redis-tools" source bench/lib.sh
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server on port $1 did not answer PING" >&2; return 1; }

# start_redis / start_node: start a fresh server, set PORT and PID.
start_redis() {
  if [ -n "${REFERENCE:-}" ]; then start_node "$REFERENCE"; return; fi
  PORT=$(free_port)
  redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
  PID=$!; pids+=("$PID"); wait_port "$PORT"
}
start_node() {
  PORT=$(free_port)
  "${1:-$NODE_BIN}" --bind 127.0.0.1 --resp-port "$PORT" --http-port "$(free_port)" --peer-port "$(free_port)" \
    --max-memory 16000000000 --log-level warn ${NODE_ARGS:-} >"$work/node.log" 2>&1 &
  PID=$!; pids+=("$PID"); wait_port "$PORT"
}
stop() {
  kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true
  if [ -n "${PEER_PID:-}" ]; then kill "$PEER_PID" 2>/dev/null || true; wait "$PEER_PID" 2>/dev/null || true; PEER_PID=; fi
}

# run_bench PORT ARGS...: prints "rps p50 p99" of the one test the args select.
run_bench() {
  local port=$1; shift
  redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" --csv "$@" 2>/dev/null \
    | awk -F'","' 'NR==2 { print $2, $5, $7 }'
}

# label | prefill (run first, not measured; empty for none) | measured redis-benchmark args
rows=(
  "SET||-t set"
  "GET|-t set -r 100000|-t get -r 100000"
  "SET -P 16||-t set -P 16"
  "GET -P 16|-t set -r 100000|-t get -r 100000 -P 16"
  "SET -d 1024 -P 16||-t set -d 1024 -P 16"
  "GET -d 1024|-t set -d 1024 -r 100000|-t get -d 1024 -r 100000"
  "session SET EX||-r 100000 SET sess:__rand_int__ payload-of-a-session-0123456789 EX 1800"
  "session GET|-r 100000 SET sess:__rand_int__ payload-of-a-session-0123456789 EX 1800|-r 100000 GET sess:__rand_int__"
  "session EXPIRE|-r 100000 SET sess:__rand_int__ payload-of-a-session-0123456789 EX 1800|-r 100000 EXPIRE sess:__rand_int__ 1800"
  "SADD||-r 100000 SADD principal:__rand_int__ sess-__rand_int__"
  "ZADD||-r 100000 ZADD rate:__rand_int__ __rand_int__ req-__rand_int__"
  "HSET 5-field session||-r 100000 HSET session:__rand_int__ data payload-of-a-session-0123456789 idleTimeout 1800 user u-12345 created 1700000000 ip 10.0.0.1"
  "INCR||-r 100000 INCR counter:__rand_int__"
)

# cpu_ns PID: CPU time the server's threads have used, in nanoseconds (schedstat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'; }

# measure START_FN PREFILL ARGS OUT: one round on a fresh server, appended to OUT as
# "ops/s p50 p99 server-CPU-µs-per-request".
measure() {
  local start_fn=$1 prefill=$2 args=$3 out=$4 p a before result
  "$start_fn"
  if [ -n "$prefill" ]; then read -r -a p <<<"$prefill"; run_bench "$PORT" "${p[@]}" >/dev/null; fi
  read -r -a a <<<"$args"
  before=$(cpu_ns "$PID")
  result=$(run_bench "$PORT" "${a[@]}")
  echo "$result $(echo "($(cpu_ns "$PID") - $before) / 1000 / $REQUESTS" | bc -l)" >> "$out"
  stop
}

ref=redis; [ -n "${REFERENCE:-}" ] && ref=reference
printf '\n| test | %s ops/s | %s ops/s | ratio | %s p50/p99 ms | %s p50/p99 ms | p99 ratio | server CPU µs/request, %s / %s | CPU ratio |\n|---|---|---|---|---|---|---|---|---|\n' \
  "$ref" "$SUBJECT" "$ref" "$SUBJECT" "$ref" "$SUBJECT" > "$work/table"
for row in "${rows[@]}"; do
  IFS='|' read -r label prefill args <<<"$row"
  if [ -n "${ONLY:-}" ] && ! [[ $label =~ $ONLY ]]; then continue; fi
  step "$label ($ROUNDS rounds each, alternating)"
  : > "$work/r"; : > "$work/s"
  for _ in $(seq "$ROUNDS"); do
    measure start_redis "$prefill" "$args" "$work/r"
    measure "$start_subject" "$prefill" "$args" "$work/s"
  done
  rr=$(cut -d' ' -f1 "$work/r" | median); sr=$(cut -d' ' -f1 "$work/s" | median)
  r50=$(cut -d' ' -f2 "$work/r" | median); s50=$(cut -d' ' -f2 "$work/s" | median)
  r99=$(cut -d' ' -f3 "$work/r" | median); s99=$(cut -d' ' -f3 "$work/s" | median)
  rc=$(cut -d' ' -f4 "$work/r" | median); sc=$(cut -d' ' -f4 "$work/s" | median)
  printf '| %s | %.0f | %.0f | %.2f | %s / %s | %s / %s | %.2f | %.2f / %.2f | %.2f |\n' "$label" "$rr" "$sr" \
    "$(echo "$sr / $rr" | bc -l)" "$r50" "$r99" "$s50" "$s99" "$(echo "$s99 / ($r99 + 0.000001)" | bc -l)" \
    "$rc" "$sc" "$(echo "$sc / ($rc + 0.000001)" | bc -l)" >> "$work/table"
done

# Memory per session: load SESSIONS keys with a TTL through redis-cli --pipe, compare RSS growth.
# gen N SIZE: N string sessions of SIZE bytes; gen N hash: N hashes of 5 fields (what the HTTP
# session API and Spring Session write), each with EXPIRE 3600.
gen() { python3 - "$1" "$2" <<'PY'
import sys
n, size = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
def command(*args):
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
for i in range(n):
    k = b"sess:%012d" % i
    if size == "hash":
        command(b"HSET", k, b"data", b'{"user":"u-12345","cart":[1,2,3]}', b"idleTimeout", b"1800",
                b"user", b"u-12345", b"created", b"1700000000000", b"ip", b"10.0.0.1")
        command(b"EXPIRE", k, b"3600")
    else:
        command(b"SET", k, b"v" * int(size), b"EX", b"3600")
PY
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
memory=yes; { [ -n "${ONLY:-}" ] || [ "$SUBJECT" != store-node ]; } && memory=no
[ "$memory" = no ] || printf '\n| sessions | %s B/session | store-node B/session | ratio |\n|---|---|---|---|\n' "$ref" >> "$work/table"
# A cluster member keeps a stamp per hash field (what merging needs); a single node in RAM does
# not. member_node starts store-node as one of two cluster members (the other, PEER_PID, takes
# the replicated writes, so the measured node's op-log is trimmed as in a running cluster; a
# member with no live peer would keep up to 64 MiB of log instead).
member_node() {
  local peer_a peer_b http_a; peer_a=$(free_port); peer_b=$(free_port); http_a=$(free_port)
  local peers="127.0.0.1:$peer_a,127.0.0.1:$peer_b"
  "$NODE_BIN" --bind 127.0.0.1 --node-name bench-1 --resp-port "$(free_port)" --http-port "$(free_port)" \
    --peer-port "$peer_b" --peers "$peers" --first-start-wait-ms 1500 --max-memory 16000000000 --log-level warn >"$work/peer.log" 2>&1 &
  PEER_PID=$!; pids+=("$PEER_PID")
  PORT=$(free_port)
  "$NODE_BIN" --bind 127.0.0.1 --node-name bench-0 --resp-port "$PORT" --http-port "$http_a" \
    --peer-port "$peer_a" --peers "$peers" --first-start-wait-ms 1500 --max-memory 16000000000 --log-level warn ${NODE_ARGS:-} >"$work/node.log" 2>&1 &
  PID=$!; pids+=("$PID"); wait_port "$PORT"
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$http_a/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "the measured cluster member did not become ready" >&2; return 1
}
for case in "32|single node|start_node" "1024|single node|start_node" "hash|single node|start_node" "hash|member of a 2-node cluster|member_node"; do
  [ "$memory" = no ] && break
  IFS='|' read -r size mode start <<<"$case"
  label="$size B value"; [ "$size" = hash ] && label="5-field hash"
  step "memory: $SESSIONS sessions, $label with TTL, store-node as a $mode"
  gen "$SESSIONS" "$size" > "$work/load.resp"
  start_redis; before=$(rss_kb "$PID"); redis-cli -p "$PORT" --pipe < "$work/load.resp" >/dev/null
  rb=$(( ($(rss_kb "$PID") - before) * 1024 / SESSIONS )); stop
  "$start"; before=$(rss_kb "$PID"); redis-cli -p "$PORT" --pipe < "$work/load.resp" >/dev/null
  sb=$(( ($(rss_kb "$PID") - before) * 1024 / SESSIONS )); stop
  printf '| %s × %s, EX 3600, store-node as a %s | %s | %s | %.2f |\n' "$SESSIONS" "$label" "$mode" "$rb" "$sb" "$(echo "$sb / $rb" | bc -l)" >> "$work/table"
  rm -f "$work/load.resp"
done

against="redis-server $(redis-server --version | awk '{print $3}' | cut -d= -f2)"
[ -n "${REFERENCE:-}" ] && against="the reference $REFERENCE"
printf '\n%s vs %s, %s rounds, -n %s -c %s, %s\n' \
  "$SUBJECT" "$against" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$(date -u +%Y-%m-%d)"
cat "$work/table"
