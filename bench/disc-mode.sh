#!/usr/bin/env bash
# Benchmark: store-node in disc mode against RAM mode, in the same run.
#
# 1. SET throughput: the same redis-benchmark flags for ram, disc+everysec and disc+always,
#    ROUNDS times each, alternating on fresh processes and fresh data directories; median and
#    ratio to ram (target: everysec >= 0.7x). Every run starts after SETTLE seconds of rest:
#    on this VM, memory freed for a second or two goes back to the host and costs about
#    0.4 GB/s to touch again, against 8-10 GB/s right after a free, so without the rest each
#    mode ran on whatever the mode before it freed (RAM mode always after `always`, which
#    freed its page cache too) and the ratio swung between 0.6 and 0.9 (docs/persistence.md).
# 2. Recovery: SESSIONS sessions of 1 KiB (EX 86400) loaded into a disc node with
#    redis-cli --pipe, SIGTERM, restart on the same directory; the time from the start of the
#    process to /readyz answering 200 (target <= 10 s), and every key checked with DBSIZE.
# 3. Disc bytes per live byte after compaction: every session overwritten OVERWRITES times, then
#    (once no snapshot is running) discBytes from /v1/status over the live payload (key + value
#    bytes) (target <= 2); the largest value sampled during the overwrites is shown too.
#
# Usage: bench/disc-mode.sh [--quick]
#   ROUNDS (default 3), REQUESTS (200000), CLIENTS (50), SESSIONS (1000000), OVERWRITES (3)
#   SETTLE (default 8: seconds of rest before each throughput run)
#   THROUGHPUT_ONLY=1 runs only part 1 (the SET rows) and prints their table.
#   REFERENCE=PATH (another store-node binary, e.g. from bench/build-rev.sh main~1): part 1
#   only, each mode run on that binary and on this build alternating; the ratios are this
#   build against the reference.
source "$(dirname "$0")/../hack/lib.sh"
cd "$ROOT"

ROUNDS=${ROUNDS:-3}; REQUESTS=${REQUESTS:-200000}; CLIENTS=${CLIENTS:-50}
SESSIONS=${SESSIONS:-1000000}; OVERWRITES=${OVERWRITES:-3}; SETTLE=${SETTLE:-8}
if [ "${1:-}" = "--quick" ]; then ROUNDS=1; REQUESTS=50000; SESSIONS=100000; OVERWRITES=2; fi

BENCH_PACKAGES="redis-tools curl" source bench/lib.sh
# CARGO_TARGET_DIR decides which build is measured (hack/lib.sh defaults it to the shared one).
step "measuring $NODE_BIN (built $(date -u -r "$NODE_BIN" +%Y-%m-%dT%H:%M:%SZ))"

now() { date +%s.%N; }
# wait_ready: polls /readyz every 20 ms (up to 10 min); fails if the node exits.
wait_ready() {
  for _ in $(seq 30000); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP/readyz" 2>/dev/null)" = 200 ] && return 0
    kill -0 "$PID" 2>/dev/null || { echo "store-node exited; log:" >&2; tail -20 "$work/node.log" >&2; return 1; }
    sleep 0.02
  done
  echo "store-node on port $PORT not ready after 10 min" >&2; return 1
}

# start MODE FSYNC DATA_DIR: starts a node (not waiting), sets PORT, HTTP and PID.
start() {
  PORT=$(free_port); HTTP=$(free_port)
  "${BIN:-$NODE_BIN}" --bind 127.0.0.1 --resp-port "$PORT" --http-port "$HTTP" --peer-port "$(free_port)" \
    --storage-mode "$1" --fsync "$2" --data-dir "$3" \
    --max-memory 16000000000 --log-level warn >>"$work/node.log" 2>&1 &
  PID=$!; pids+=("$PID")
}
stop() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
status_field() { curl -s "http://127.0.0.1:$HTTP/v1/status" | python3 -c "import json,sys; print(json.load(sys.stdin)['storage']['$1'])"; }
info_field() { redis-cli -p "$PORT" INFO persistence | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }

# label | redis-benchmark args
rows=(
  "SET 100 B|-t set -d 100 -r 100000"
  "SET 1 KiB -P 16|-t set -d 1024 -r 100000 -P 16"
)
modes=("ram everysec" "disc everysec" "disc always")
table="$work/table"
if [ -n "${REFERENCE:-}" ]; then
  # One throughput run of MODE on BIN, appended to OUT.
  run_mode() {
    local storage fsync; read -r storage fsync <<<"$1"
    sleep "$SETTLE"
    BIN=$2 start "$storage" "$fsync" "$work/data"; wait_ready
    redis-benchmark -p "$PORT" -n "$REQUESTS" -c "$CLIENTS" --csv "${a[@]}" 2>/dev/null \
      | awk -F'","' 'NR==2 { print $2 }' >> "$3"
    stop; rm -rf "$work/data"
  }
  printf '| test | mode | reference ops/s | this build ops/s | ratio |\n|---|---|---|---|---|\n' > "$table"
  for row in "${rows[@]}"; do
    IFS='|' read -r label args <<<"$row"; read -r -a a <<<"$args"
    for mode in "${modes[@]}"; do
      step "$label, $mode: $ROUNDS rounds each of the reference and this build, alternating"
      : > "$work/ref"; : > "$work/new"
      for _ in $(seq "$ROUNDS"); do
        run_mode "$mode" "$REFERENCE" "$work/ref"
        run_mode "$mode" "$NODE_BIN" "$work/new"
      done
      ref=$(median < "$work/ref"); new=$(median < "$work/new")
      printf '| %s | %s | %.0f | %.0f | %s |\n' "$label" "$mode" "$ref" "$new" "$(ratio "$new" "$ref")" >> "$table"
    done
  done
  printf '\nstore-node %s against the reference %s, %s rounds, -n %s -c %s, SETTLE=%s, %s\n\n' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$REFERENCE" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$SETTLE" "$(date -u +%Y-%m-%dT%H:%MZ)"
  cat "$table"
  exit 0
fi
printf '| test | ram ops/s | disc everysec ops/s | ratio | disc always ops/s | ratio |\n|---|---|---|---|---|---|\n' > "$table"
for row in "${rows[@]}"; do
  IFS='|' read -r label args <<<"$row"; read -r -a a <<<"$args"
  step "$label: $ROUNDS rounds of $REQUESTS per mode, alternating (-c $CLIENTS)"
  for mode in "${modes[@]}"; do : > "$work/${mode// /-}"; done
  for round in $(seq "$ROUNDS"); do
    for mode in "${modes[@]}"; do
      read -r storage fsync <<<"$mode"
      sleep "$SETTLE"
      start "$storage" "$fsync" "$work/data-$round-$storage-$fsync"; wait_ready
      redis-benchmark -p "$PORT" -n "$REQUESTS" -c "$CLIENTS" --csv "${a[@]}" 2>/dev/null \
        | awk -F'","' 'NR==2 { print $2 }' >> "$work/${mode// /-}"
      stop; rm -rf "$work/data-$round-$storage-$fsync"
    done
  done
  ram=$(median < "$work/ram-everysec"); every=$(median < "$work/disc-everysec"); always=$(median < "$work/disc-always")
  printf '| %s | %.0f | %.0f | %s | %.0f | %s |\n' "$label" "$ram" "$every" "$(ratio "$every" "$ram")" \
    "$always" "$(ratio "$always" "$ram")" >> "$table"
done

if [ "${THROUGHPUT_ONLY:-0}" = 1 ]; then
  printf '\nstore-node disc mode vs ram mode (throughput only), commit %s, %s rounds, -n %s -c %s, SETTLE=%s, %s, load average %s\n\n' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$SETTLE" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"
  cat "$table"
  exit 0
fi

# Sessions as RESP: SET sess:<12 digits> <1024 bytes> EX 86400, generated (not stored) per pass.
gen() { python3 - "$SESSIONS" "$1" <<'PY'
import sys
n, tag = int(sys.argv[1]), sys.argv[2].encode()
out = sys.stdout.buffer
val = (tag * 1024)[:1024]
for i in range(n):
    k = b"sess:%012d" % i
    out.write(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1024\r\n%s\r\n$2\r\nEX\r\n$5\r\n86400\r\n" % (len(k), k, val))
PY
}
live=$(( SESSIONS * (17 + 1024) ))

step "recovery: loading $SESSIONS sessions of 1 KiB (disc, everysec)"
dir="$work/recovery"
start disc everysec "$dir"; wait_ready
gen a | redis-cli -p "$PORT" --pipe >/dev/null
stop
disc_at_stop=$(du -sb "$dir" | cut -f1)
step "recovery: restarting on $(( disc_at_stop / 1048576 )) MiB"
t0=$(now); start disc everysec "$dir"; wait_ready; t1=$(now)
recovery=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
keys=$(redis-cli -p "$PORT" DBSIZE)
[ "$keys" = "$SESSIONS" ] || echo "WARNING: $keys keys after recovery, expected $SESSIONS" >&2

step "compaction: overwriting every session $OVERWRITES times"
peak=0
for pass in $(seq "$OVERWRITES"); do
  gen "$pass" | redis-cli -p "$PORT" --pipe >/dev/null &
  loader=$!
  while kill -0 "$loader" 2>/dev/null; do
    bytes=$(status_field discBytes); [ "$bytes" -gt "$peak" ] && peak=$bytes; sleep 0.5
  done
  wait "$loader"
done
# A snapshot started near the end holds the old files until it finishes: wait for quiet.
sleep 3; prev=-1
for _ in $(seq 120); do disc=$(status_field discBytes); [ "$disc" = "$prev" ] && break; prev=$disc; sleep 1; done
snapshots=$(info_field rdb_saves)
keys_after=$(redis-cli -p "$PORT" DBSIZE)
stop

load=$(cut -d' ' -f1-3 /proc/loadavg)
{
  printf '| recovery of %s sessions × 1 KiB (%s MiB on disc) | %s s from process start to /readyz 200, %s keys |\n' \
    "$SESSIONS" "$(( disc_at_stop / 1048576 ))" "$recovery" "$keys"
  printf '| disc bytes per live byte after %s overwrites | %s at rest (%s disc / %s live bytes, %s keys, %s snapshots); peak sampled %s |\n' \
    "$OVERWRITES" "$(ratio "$disc" "$live")" "$disc" "$live" "$keys_after" "$snapshots" "$(ratio "$peak" "$live")"
} > "$work/table2"

printf '\nstore-node disc mode vs ram mode, commit %s, %s rounds, -n %s -c %s, SETTLE=%s, %s, load average %s\n\n' \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$ROUNDS" "$REQUESTS" "$CLIENTS" "$SETTLE" "$(date -u +%Y-%m-%dT%H:%MZ)" "$load"
cat "$table"
printf '\n| measure | result |\n|---|---|\n'
cat "$work/table2"
