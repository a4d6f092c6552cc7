#!/usr/bin/env bash
# Benchmark (not a test) of the operator on the local cluster (e2e/cluster): resident memory and
# CPU of the leading operator process while it manages N SessionClusters in a steady state, the
# API writes it makes in that state, and the time from a spec change to the child objects
# updated. Prints one summary block at the end.
#
# Usage: operator/bench/steady-state.sh [N]        (default N=50)
#   BENCH_WINDOW=180   seconds of steady state measured (the operator polls every node once a
#                      minute, so at least 120 to cover two polls of every cluster)
#   BENCH_PAUSED=1     create the clusters paused (no pods) instead of 1-replica clusters
#   BENCH_CHANGES=5    spec changes timed
#
# Needs the cluster up and the chart installed with the operator image under test. Creates the
# namespace sessionstore-bench and deletes it (and everything in it) on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N="${1:-50}"
WINDOW="${BENCH_WINDOW:-180}"
PAUSED="${BENCH_PAUSED:-0}"
CHANGES="${BENCH_CHANGES:-5}"
NS=sessionstore-bench
OPERATOR_NS=sessionstore-system
export KUBECONFIG="$("$ROOT/e2e/cluster/cluster.sh" kubeconfig)"
KUBECTL="$("$ROOT/e2e/cluster/cluster.sh" kubectl)"
k() { "$KUBECTL" "$@"; }
log() { echo "[$(date +%T)] $*" >&2; }

"$ROOT/e2e/cluster/cluster.sh" status >/dev/null || { echo "steady-state.sh: the local cluster is not up (e2e/cluster/cluster.sh up)" >&2; exit 1; }
k -n "$OPERATOR_NS" get deployment sessionstore-operator >/dev/null || { echo "steady-state.sh: install the chart first (see operator/README or e2e/cluster/README.md)" >&2; exit 1; }

cleanup() {
  log "deleting namespace $NS"
  k delete namespace "$NS" --ignore-not-found --wait=true --timeout=180s >/dev/null || true
}
trap cleanup EXIT

# The leader's host PID: Lease holder -> pod -> containerd task.
leader_pid() {
  local holder container_id
  holder="$(k -n "$OPERATOR_NS" get lease sessionstore-operator -o jsonpath='{.spec.holderIdentity}')"
  container_id="$(k -n "$OPERATOR_NS" get pod "$holder" -o jsonpath='{.status.containerStatuses[0].containerID}')"
  container_id="${container_id#containerd://}"
  "$ROOT/e2e/cluster/cluster.sh" ctr tasks ls 2>/dev/null | awk -v id="$container_id" '$1 == id {print $2}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# resourceVersion of every SessionCluster and child object in the namespace.
versions() {
  k -n "$NS" get sessionclusters,statefulsets,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets \
    -l 'app.kubernetes.io/managed-by!=nobody' -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.metadata.resourceVersion}{"\n"}{end}' | sort
}
metric() { # metric NAME: sum of a counter on the leader's /metrics
  k -n "$OPERATOR_NS" get --raw "/api/v1/namespaces/$OPERATOR_NS/pods/$(k -n "$OPERATOR_NS" get lease sessionstore-operator -o jsonpath='{.spec.holderIdentity}'):8080/proxy/metrics" \
    | awk -v m="$1" 'index($0, m) == 1 && $0 !~ /^#/ {s += $NF} END {print s + 0}'
}

k create namespace "$NS" >/dev/null
pid="$(leader_pid)"
[ -n "$pid" ] || { echo "steady-state.sh: cannot find the leading operator's process" >&2; exit 1; }
rss_before="$(rss_kib "$pid")"
log "operator leader pid $pid, RSS $((rss_before / 1024)) MiB before; creating $N SessionClusters (paused=$PAUSED)"

manifests=""
for i in $(seq 1 "$N"); do
  manifests+="---
apiVersion: sessionstore.dev/v1alpha1
kind: SessionCluster
metadata: {name: bench-$i, namespace: $NS}
spec:
  replicas: 1
  paused: $([ "$PAUSED" = 1 ] && echo true || echo false)
  auth: {enabled: false}
  resources:
    requests: {cpu: 5m, memory: 24Mi}
    limits: {memory: 48Mi}
"
done
start=$(date +%s.%N)
echo "$manifests" | k apply -f - >/dev/null
if [ "$PAUSED" = 1 ]; then
  k -n "$NS" wait sessionclusters --all --for=condition=Paused --timeout=300s >/dev/null
else
  k -n "$NS" wait sessionclusters --all --for=condition=Available --timeout=900s >/dev/null
fi
ready_seconds=$(echo "$(date +%s.%N) - $start" | bc)
log "all $N clusters Available/Paused after ${ready_seconds}s; settling 70s (one full poll round)"
sleep 70

v0="$(versions)"
reconciles0="$(metric sessionstore_operator_reconciles_total)"
events0="$(k -n "$NS" get events --no-headers 2>/dev/null | wc -l)"
t0="$(cpu_ticks "$pid")"
hz="$(getconf CLK_TCK)"
max_rss=0; sum_rss=0; samples=0
log "measuring ${WINDOW}s of steady state"
end=$(( $(date +%s) + WINDOW ))
while [ "$(date +%s)" -lt "$end" ]; do
  r="$(rss_kib "$pid")"; sum_rss=$((sum_rss + r)); samples=$((samples + 1))
  [ "$r" -gt "$max_rss" ] && max_rss="$r"
  sleep 5
done
t1="$(cpu_ticks "$pid")"
v1="$(versions)"
reconciles1="$(metric sessionstore_operator_reconciles_total)"
events1="$(k -n "$NS" get events --no-headers 2>/dev/null | wc -l)"
changed="$(diff <(echo "$v0") <(echo "$v1") | grep -c '^>' || true)"
cpu_percent=$(echo "scale=3; ($t1 - $t0) * 100 / $hz / $WINDOW" | bc)
objects="$(echo "$v1" | wc -l)"

# Spec change -> children updated: a new session timeout changes the ConfigMap and (through the
# config hash) the StatefulSet's pod template; timed with watch-based waits.
latencies=()
for c in $(seq 1 "$CHANGES"); do
  name="bench-$c"
  gen="$(k -n "$NS" get statefulset "$name" -o jsonpath='{.metadata.generation}' 2>/dev/null || echo 0)"
  minutes=$((40 + c))
  s=$(date +%s.%N)
  k -n "$NS" patch sessioncluster "$name" --type merge -p "{\"spec\":{\"sessions\":{\"defaultTimeout\":\"${minutes}m\"}}}" >/dev/null
  k -n "$NS" wait configmap "$name-config" --for=jsonpath="{.data.STORE_NODE_DEFAULT_SESSION_TIMEOUT}=$((minutes * 60))" --timeout=60s >/dev/null
  if [ "$PAUSED" != 1 ]; then
    k -n "$NS" wait statefulset "$name" --for=jsonpath="{.metadata.generation}=$((gen + 1))" --timeout=60s >/dev/null
  fi
  latencies+=("$(echo "$(date +%s.%N) - $s" | bc)")
done
rss_after="$(rss_kib "$pid")"

sorted="$(printf '%s\n' "${latencies[@]}" | sort -n)"
cat <<EOF

== operator steady state: $N SessionClusters ($([ "$PAUSED" = 1 ] && echo "paused, no pods" || echo "replicas 1, one store-node pod each")) ==
created -> all Available:      ${ready_seconds}s
steady window:                 ${WINDOW}s
operator RSS:                  before $((rss_before / 1024)) MiB, window mean $((sum_rss / samples / 1024)) MiB, max $((max_rss / 1024)) MiB, after changes $((rss_after / 1024)) MiB
operator CPU in window:        ${cpu_percent}% of one core
reconciles in window:          $((reconciles1 - reconciles0))
objects watched for writes:    $objects (SessionClusters + children)
objects written in window:     $changed
events in window:              $((events1 - events0))
spec change -> ConfigMap+StatefulSet updated (s, $CHANGES changes): $(echo $sorted | tr '\n' ' ')
EOF
if [ "$changed" -gt 0 ]; then
  echo "written objects:"; diff <(echo "$v0") <(echo "$v1") | grep '^>' || true
fi
