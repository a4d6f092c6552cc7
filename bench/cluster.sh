#!/usr/bin/env bash
# Benchmark: a replicated store-node cluster on loopback (docs/replication.md), three parts.
#
# (a) Throughput. Three nodes with --write-ack one take the load spread over them: three
#     concurrent redis-benchmark runs, one per node, each with a third of the requests and of
#     the clients, ops/s summed. A single node without peers takes the same total load. Both run
#     in this run, alternating, ROUNDS times each, each round on fresh processes; the table shows
#     medians and the ratio cluster / single (target >= 0.5). On a 2-core machine the three nodes
#     and three clients share the cores that one node and one client have alone, and every write
#     is applied three times: the ratio is what to read, not the absolute numbers. Each round
#     starts after SETTLE seconds of rest: on this VM, memory freed for a second or two goes back
#     to the host (virtio_balloon free page reporting) and costs about 0.4 GB/s to touch again,
#     against 8 to 10 GB/s right after it was freed, so without the pause the single node ran on
#     the pages the previous 3-node round had just freed and the cluster on pages the host had
#     taken back (docs/replication.md, "New memory").
# (b) Bootstrap. A third node joins a 2-node cluster holding SESSIONS sessions of 1 KiB (loaded
#     through redis-cli --pipe): time from its start to /readyz 200 (snapshot from a peer, an
#     anti-entropy round with each peer, the link-back wait), and the replication bytes it
#     received per second (target <= 20 s for 1M sessions).
# (c) Partition heal. Three nodes with the test-only transport fault (--test-faults), cut
#     {n-0} | {n-1, n-2}, PARTITION_WRITES writes of 1 KiB on each side, heal: time until every
#     node reports the same digest. With the default op-log (64 MiB) the smaller row resumes
#     from the log; the larger one overflows it, so anti-entropy repairs the rest.
#
# Usage: bench/cluster.sh [--quick]
#   ROUNDS (default 3), REQUESTS (default 150000), CLIENTS (default 48), SESSIONS (default
#   1000000), PARTITION_WRITES (default "20000 100000"), PARTS (default "abc": the parts to run;
#   PARTS=a runs only the throughput part, for iterating on it), SETTLE (default 8: seconds of
#   rest before each throughput round)
source "$(dirname "$0")/../hack/lib.sh"
cd "$ROOT"

ROUNDS=${ROUNDS:-3}; REQUESTS=${REQUESTS:-150000}; CLIENTS=${CLIENTS:-48}
SESSIONS=${SESSIONS:-1000000}; PARTITION_WRITES=${PARTITION_WRITES:-"20000 100000"}
PARTS=${PARTS:-abc}; SETTLE=${SETTLE:-8}
if [ "${1:-}" = "--quick" ]; then ROUNDS=1; REQUESTS=30000; SESSIONS=100000; PARTITION_WRITES="20000"; fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

BENCH_PACKAGES="redis-tools curl jq" source bench/lib.sh
declare -A RESP HTTP PEER NODE_PID
PAYLOAD=$(head -c 1024 /dev/zero | tr '\0' 's')

# new_nodes N: names n-0 .. n-(N-1) with fresh ports; sets PEERS to their peer addresses.
new_nodes() {
  PEERS=""
  for i in $(seq 0 $(($1 - 1))); do
    RESP[n-$i]=$(free_port); HTTP[n-$i]=$(free_port); PEER[n-$i]=$(free_port)
    PEERS="${PEERS:+$PEERS,}127.0.0.1:${PEER[n-$i]}"
  done
}
# start_node NAME PEERS EXTRA...: starts a node (PEERS empty = single node, no replication).
start_node() {
  local name=$1 peers=$2; shift 2
  local args=(--bind 127.0.0.1 --resp-port "${RESP[$name]}" --http-port "${HTTP[$name]}"
    --peer-port "${PEER[$name]}" --node-name "$name" --max-memory 16000000000
    --first-start-wait-ms 500 --log-level warn)
  if [ -n "$peers" ]; then args+=(--peers "$peers"); fi
  "$NODE_BIN" "${args[@]}" "$@" >>"$work/$name.log" 2>&1 &
  NODE_PID[$name]=$!; pids+=("$!")
}
stop_node() { kill "${NODE_PID[$1]}" 2>/dev/null || true; wait "${NODE_PID[$1]}" 2>/dev/null || true; }
http_get() { curl -s --max-time 5 "http://127.0.0.1:${HTTP[$1]}$2"; }
is_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:${HTTP[$1]}/readyz")" = 200 ]; }
# wait_until SECONDS DESCRIPTION COMMAND...: polls every 50 ms.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out waiting for $what" >&2; tail -n 20 "$work"/*.log >&2; return 1; fi
    sleep 0.05
  done
}
digest() { http_get "$1" /v1/cluster | jq -r '.members[] | select(.self == true) | .digest'; }
same_digest() {
  local first; first=$(digest "$1") || return 1; [ -n "$first" ] || return 1
  for name in "${@:2}"; do [ "$(digest "$name")" = "$first" ] || return 1; done
}
all_ready() { for name in "$@"; do is_ready "$name" || return 1; done; }
info_field() { redis-cli -p "${RESP[$1]}" INFO "$2" | tr -d '\r' | awk -F: -v f="$3" '$1 == f { print $2 }'; }
now() { date +%s.%N; }

# rps PORT REQUESTS CLIENTS ARGS...: the ops/s redis-benchmark reports for one test.
rps() {
  local port=$1 requests=$2 clients=$3; shift 3
  redis-benchmark -p "$port" -n "$requests" -c "$clients" --csv "$@" | awk -F'","' 'NR==2 { print $2 }'
}

# ---- (a) throughput ----------------------------------------------------------------------------
write_cmd=(-r 1000000 SET "sess:__rand_int__" "$PAYLOAD" EX 1800)
read_cmd=(-r 100000 GET "sess:__rand_int__")
prefill_cmd=(-r 100000 SET "sess:__rand_int__" "$PAYLOAD" EX 1800)

single_round() {
  new_nodes 1; start_node n-0 ""; wait_until 30 "n-0 ready" is_ready n-0
  rps "${RESP[n-0]}" "$REQUESTS" "$CLIENTS" "${write_cmd[@]}" >> "$work/single.set"
  rps "${RESP[n-0]}" "$REQUESTS" "$CLIENTS" "${prefill_cmd[@]}" >/dev/null
  rps "${RESP[n-0]}" "$REQUESTS" "$CLIENTS" "${read_cmd[@]}" >> "$work/single.get"
  stop_node n-0
}
# spread OUT ARGS...: three concurrent runs, one per node; appends the summed ops/s to OUT.
spread() {
  local out=$1 runs=(); shift
  for i in 0 1 2; do
    rps "${RESP[n-$i]}" $((REQUESTS / 3)) $((CLIENTS / 3)) "$@" > "$work/part.$i" &
    runs+=("$!")
  done
  wait "${runs[@]}"
  awk '{ s += $1 } END { printf "%.0f\n", s }' "$work"/part.0 "$work"/part.1 "$work"/part.2 >> "$out"
}
cluster_round() {
  new_nodes 3
  for i in 0 1 2; do start_node "n-$i" "$PEERS" --write-ack one; done
  wait_until 60 "3 nodes ready" all_ready n-0 n-1 n-2
  spread "$work/cluster.set" "${write_cmd[@]}"
  rps "${RESP[n-0]}" "$REQUESTS" "$CLIENTS" "${prefill_cmd[@]}" >/dev/null
  wait_until 60 "convergence after the prefill" same_digest n-0 n-1 n-2
  spread "$work/cluster.get" "${read_cmd[@]}"
  for i in 0 1 2; do stop_node "n-$i"; done
}
: > "$work/single.set"; : > "$work/single.get"; : > "$work/cluster.set"; : > "$work/cluster.get"
for round in $(seq "$ROUNDS"); do
  step "throughput round $round/$ROUNDS: single node"
  sleep "$SETTLE"; single_round
  step "throughput round $round/$ROUNDS: 3 nodes, --write-ack one"
  sleep "$SETTLE"; cluster_round
done
{
  printf '\n| load (-n %s -c %s in total, 1 KiB values) | 1 node ops/s | 3 nodes ops/s (3 × -c %s, summed) | ratio (target >= 0.5) |\n|---|---|---|---|\n' \
    "$REQUESTS" "$CLIENTS" $((CLIENTS / 3))
  for row in "set|SET sess:<rand> <1 KiB> EX 1800" "get|GET sess:<rand> (100k keys)"; do
    IFS='|' read -r kind label <<<"$row"
    single=$(median < "$work/single.$kind"); cluster=$(median < "$work/cluster.$kind")
    printf '| %s | %.0f | %.0f | %.2f |\n' "$label" "$single" "$cluster" "$(echo "$cluster / $single" | bc -l)"
  done
} > "$work/table"

# ---- (b) bootstrap -----------------------------------------------------------------------------
if [[ $PARTS == *b* ]]; then
gen() { python3 - "$1" <<'PY'
import sys
out = sys.stdout.buffer
val = b"v" * 1024
for i in range(int(sys.argv[1])):
    k = b"sess:%012d" % i
    out.write(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$5\r\n86400\r\n" % (len(k), k, len(val), val))
PY
}
step "bootstrap: loading $SESSIONS sessions of 1 KiB into a 2-node cluster"
new_nodes 3
start_node n-0 "$PEERS" --write-ack none; start_node n-1 "$PEERS" --write-ack none
wait_until 60 "n-0 and n-1 ready" all_ready n-0 n-1
load_started=$(now)
gen "$SESSIONS" | redis-cli -p "${RESP[n-0]}" --pipe >/dev/null
wait_until 600 "n-1 holding every session" same_digest n-0 n-1
load_seconds=$(echo "$(now) - $load_started" | bc -l)
keys=$(info_field n-1 keyspace db0 | sed 's/keys=\([0-9]*\).*/\1/')
step "bootstrap: n-2 joins"
join_started=$(now)
start_node n-2 "$PEERS" --write-ack none
wait_until 300 "n-2 ready" is_ready n-2
join_seconds=$(echo "$(now) - $join_started" | bc -l)
received=$(info_field n-2 replication sessionstore_bytes_received)
joined_keys=$(info_field n-2 keyspace db0 | sed 's/keys=\([0-9]*\).*/\1/')
rss_mb=$(( $(awk '/^VmRSS:/ { print $2 }' "/proc/${NODE_PID[n-2]}/status") / 1024 ))
for i in 0 1 2; do stop_node "n-$i"; done
{
  printf '\n| bootstrap | value |\n|---|---|\n'
  printf '| sessions held by the cluster (1 KiB values) | %s (loaded and replicated to n-1 in %.1f s) |\n' "$keys" "$load_seconds"
  printf '| joining node: start to ready (target <= 20 s at 1M) | %.1f s |\n' "$join_seconds"
  printf '| replication bytes received by the joining node | %.0f MB (%.0f MB/s over the whole join) |\n' \
    "$(echo "$received / 1000000" | bc -l)" "$(echo "$received / 1000000 / $join_seconds" | bc -l)"
  printf '| keys on the joining node when ready | %s |\n' "$joined_keys"
  printf '| joining node RSS when ready | %s MB |\n' "$rss_mb"
} >> "$work/table"
fi

# ---- (c) partition heal ------------------------------------------------------------------------
if [[ $PARTS == *c* ]]; then
block() { curl -s -o /dev/null --max-time 5 -X POST -H 'Content-Type: application/json' -d "{\"blocked\": $2}" "http://127.0.0.1:${HTTP[$1]}/v1/test/faults"; }
isolated() { [ "$(http_get n-0 /v1/status | jq '[.peers[].connected] | any')" = false ]; }
printf '\n| partition {n-0} or {n-1, n-2}, writes of 1 KiB on each side | heal to same digest on all 3 |\n|---|---|\n' >> "$work/table"
for writes in $PARTITION_WRITES; do
  step "partition: $writes writes per side"
  new_nodes 3
  for i in 0 1 2; do start_node "n-$i" "$PEERS" --write-ack none --test-faults; done
  wait_until 60 "3 nodes ready" all_ready n-0 n-1 n-2
  p0="\"127.0.0.1:${PEER[n-0]}\""; p12="\"127.0.0.1:${PEER[n-1]}\", \"127.0.0.1:${PEER[n-2]}\""
  block n-0 "[$p12]"; block n-1 "[$p0]"; block n-2 "[$p0]"
  wait_until 30 "n-0 cut off" isolated
  rps "${RESP[n-0]}" "$writes" 16 -r 100000000 SET "a:__rand_int__" "$PAYLOAD" >/dev/null &
  minority=$!
  rps "${RESP[n-1]}" "$writes" 16 -r 100000000 SET "b:__rand_int__" "$PAYLOAD" >/dev/null &
  wait "$minority" "$!"
  wait_until 60 "the majority side to agree" same_digest n-1 n-2
  healed=$(now)
  for i in 0 1 2; do block "n-$i" "[]"; done
  wait_until 300 "convergence after the heal" same_digest n-0 n-1 n-2
  printf '| %s writes per side (default op-log 64 MiB, anti-entropy every 30 s) | %.1f s |\n' \
    "$writes" "$(echo "$(now) - $healed" | bc -l)" >> "$work/table"
  for i in 0 1 2; do stop_node "n-$i"; done
done
fi

printf '\nbench/cluster.sh: commit %s, %s, %s cores, load average %s at start, %s at end; ROUNDS=%s SETTLE=%s\n' \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" \
  "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "$ROUNDS" "$SETTLE"
cat "$work/table"
