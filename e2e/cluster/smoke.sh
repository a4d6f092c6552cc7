#!/usr/bin/env bash
# Smoke test of the local cluster (exits non-zero on failure):
#   - a pod running a locally built image (nettest), `kubectl logs` and `kubectl exec` work
#   - a 3-replica StatefulSet with a headless Service (publishNotReadyAddresses) whose pod DNS
#     names resolve from inside a pod through CoreDNS
#   - a ClusterIP Service reachable from a pod (kube-proxy), and the `kubernetes` Service
#   - a PVC of the default StorageClass is provisioned and writable by a non-root pod
#   - the pods' memory limits land in the nested cgroup root (local cluster only)
# Runs against the local cluster of cluster.sh (whatever KUBECONFIG says): it proves that
# tooling, and needs its nettest image (imported by `cluster.sh up`).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KUBECONFIG_PATH=$("$CLUSTER_DIR/cluster.sh" kubeconfig)   # honours the running cluster's state dir
STATE_DIR=$(dirname "$KUBECONFIG_PATH")
export KUBECONFIG="$KUBECONFIG_PATH"
KUBECTL="$K8S_BIN/kubectl"
[ -x "$KUBECTL" ] && [ -f "$KUBECONFIG" ] || die "the local cluster is not set up (e2e/cluster/cluster.sh up)"
"$KUBECTL" get --raw /readyz --request-timeout=5s >/dev/null 2>&1 || die "the local cluster is not up (e2e/cluster/cluster.sh up)"
k() { "$KUBECTL" --cache-dir "$STATE_DIR/kube-cache" "$@"; }
NS=smoke-$(date +%s)
FAILED=0
fail() { printf 'FAIL: %s\n' "$*" >&2; FAILED=1; }
ok() { printf 'ok: %s\n' "$*" >&2; }

cleanup() {
  if [ "$FAILED" != 0 ]; then
    k -n "$NS" get pods -o wide >&2 || true
    k -n "$NS" get events --sort-by=.lastTimestamp >&2 | tail -20 || true
  fi
  k delete namespace "$NS" --wait=true --timeout=60s >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "smoke test in namespace $NS"
k create namespace "$NS" >/dev/null
k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: web}
  ports: [{name: tcp, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-svc}
spec:
  selector: {app: web}
  ports: [{name: tcp, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: OrderedReady
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: $NETTEST_IMAGE
        imagePullPolicy: IfNotPresent
        args: [serve, ":8080"]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
        resources:
          requests: {cpu: 10m, memory: 16Mi}
          limits: {memory: 32Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: $NETTEST_IMAGE
    imagePullPolicy: IfNotPresent
    args: [sleep]
YAML

t0=$(date +%s)
if k -n "$NS" wait pod/client --for=condition=Ready --timeout=60s >/dev/null; then
  ok "pod with a locally built image is Ready ($(( $(date +%s) - t0 ))s)"
else fail "client pod not Ready"; exit 1; fi
if k -n "$NS" rollout status statefulset/web --timeout=120s >/dev/null; then
  ok "StatefulSet web 3/3 Ready ($(( $(date +%s) - t0 ))s)"
else fail "StatefulSet web not ready"; exit 1; fi
# ordered creation: web-0 before web-1 before web-2
c0=$(k -n "$NS" get pod web-0 -o jsonpath='{.metadata.creationTimestamp}')
c2=$(k -n "$NS" get pod web-2 -o jsonpath='{.metadata.creationTimestamp}')
[[ "$c0" < "$c2" || "$c0" == "$c2" ]] && ok "StatefulSet pods created in order" || fail "web-2 created before web-0"

# kubectl logs goes apiserver -> kubelet (serving certificate with the node IP)
if k -n "$NS" logs web-0 | grep -q 'listening on'; then ok "kubectl logs"; else fail "kubectl logs web-0"; fi

D="$NS.svc.$CLUSTER_DOMAIN"
names=("web-0.web.$D" "web-1.web.$D" "web-2.web.$D" "web.$D" "web-svc.$D" "kubernetes.default.svc.$CLUSTER_DOMAIN")
if out=$(k -n "$NS" exec client -- /nettest lookup "${names[@]}" 2>&1); then
  ok "DNS through CoreDNS: ${#names[@]} names resolve"
else
  fail "DNS lookups"
fi
printf '%s\n' "$out" | sed 's/^/    /' >&2
# the headless Service name resolves to all three pods
n=$(printf '%s\n' "$out" | awk '$2=="web.'"$D"'" {print NF-2}')
[ "$n" = 3 ] && ok "headless Service resolves to 3 pods" || fail "headless Service resolves to ${n:-0} addresses, want 3"

svc_ip=$(k -n "$NS" get svc web-svc -o jsonpath='{.spec.clusterIP}')
if out=$(k -n "$NS" exec client -- /nettest connect "web-svc.$D:80" "$svc_ip:80" "web-1.web.$D:8080" 2>&1); then
  ok "ClusterIP Service $svc_ip reachable from a pod (by name and IP), pod reachable by DNS name"
else
  fail "TCP connects"
fi
printf '%s\n' "$out" | sed 's/^/    /' >&2
# several connections through the ClusterIP reach more than one backend
backends=$(for _ in $(seq 1 12); do k -n "$NS" exec client -- /nettest connect "$svc_ip:80" 2>/dev/null; done \
  | awk '{print $NF}' | sort -u | wc -l || true)
[ "$backends" -ge 2 ] && ok "ClusterIP load-balances ($backends backends seen in 12 connections)" \
  || fail "ClusterIP reached $backends backend(s) in 12 connections"

# the kubernetes Service (apiserver listening on the bridge IP) from a pod
if k -n "$NS" exec client -- /nettest dial "kubernetes.default.svc.$CLUSTER_DOMAIN:443" >/dev/null 2>&1; then
  ok "kubernetes Service reachable from a pod"
else fail "kubernetes Service not reachable from a pod"; fi

# kubectl port-forward (the demo's way in): a local port reaches web-0
NETTEST_HOST="$(ls -d "$TOOLS_DIR"/*/nettest 2>/dev/null | head -1)"
if [ -x "$NETTEST_HOST" ]; then
  # on the local cluster the host reaches ClusterIPs and pod IPs directly (route via the bridge)
  pod_ip=$(k -n "$NS" get pod web-2 -o jsonpath='{.status.podIP}')
  if out=$("$NETTEST_HOST" connect "$svc_ip:80" "$pod_ip:8080" 2>&1); then
    ok "host reaches ClusterIP $svc_ip and pod IP $pod_ip"
  else fail "host to ClusterIP/pod IP: $out"; fi
fi
if [ -x "$NETTEST_HOST" ]; then
  # kubectl itself in the background, not the k() function: $! must be kubectl's pid, or the
  # kill below stops only a subshell and leaves the port-forward running.
  "$KUBECTL" --cache-dir "$STATE_DIR/kube-cache" -n "$NS" port-forward pod/web-0 18080:8080 >/dev/null 2>&1 &
  pf=$!
  pf_ok=1
  for _ in $(seq 1 20); do
    if out=$("$NETTEST_HOST" connect 127.0.0.1:18080 2>&1) && grep -q 'hello from web-0' <<<"$out"; then pf_ok=0; break; fi
    sleep 0.5
  done
  kill "$pf" 2>/dev/null || true
  wait "$pf" 2>/dev/null || true
  [ $pf_ok = 0 ] && ok "kubectl port-forward reaches web-0" || fail "kubectl port-forward: $out"
fi

# A claim of the default StorageClass is provisioned, bound, and writable by a non-root pod
k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532}
  containers:
  - name: writer
    image: $NETTEST_IMAGE
    imagePullPolicy: IfNotPresent
    args: [write, /data/hello, "written by 65532"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
YAML
if k -n "$NS" wait pod/writer --for=condition=Ready --timeout=120s >/dev/null 2>&1 \
   && k -n "$NS" logs writer | grep -q 'wrote /data/hello'; then
  ok "PVC of the default StorageClass bound ($(k -n "$NS" get pvc data -o jsonpath='{.spec.volumeName}')) and written by UID 65532"
else
  fail "PVC/volume: $(k -n "$NS" get pvc data --no-headers 2>&1); pod $(k -n "$NS" get pod writer --no-headers 2>&1); $(k -n "$NS" logs writer 2>&1 | tail -2)"
fi

# The container sees its own memory limit in its cgroup (store-node's --max-memory 0 reads it)
lim=$(k -n "$NS" exec web-0 -- /nettest cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null \
  || k -n "$NS" exec web-0 -- /nettest cat /sys/fs/cgroup/memory.max 2>/dev/null || true)
[ "$lim" = $((32 * 1024 * 1024)) ] && ok "container reads its 32Mi memory limit from its cgroup" \
  || fail "container's cgroup memory limit reads '$lim', want 33554432"

# The pod's memory limit is enforced in the nested cgroup root.
if [ -f /run/sessionstore-cluster/cgroup-root ]; then
  root=$(cat /run/sessionstore-cluster/cgroup-root)
  uid=$(k -n "$NS" get pod web-0 -o jsonpath='{.metadata.uid}')
  f=$(find "/sys/fs/cgroup/memory$root" -maxdepth 4 -type d -name "pod$uid" 2>/dev/null | head -1)
  if [ -n "$f" ] && [ "$(cat "$f/memory.limit_in_bytes")" = $((32 * 1024 * 1024)) ]; then
    ok "pod memory limit 32Mi set in nested cgroup ${f#/sys/fs/cgroup/memory}"
  else
    fail "pod cgroup with a 32Mi limit not found under memory$root"
  fi
fi

if [ "$FAILED" = 0 ]; then step "smoke test passed"; else step "smoke test FAILED"; fi
exit "$FAILED"
