#!/usr/bin/env bash
# The README's first command: a SessionCluster running, Ready, and a session written and read
# back. Uses the cluster KUBECONFIG points at when it answers; otherwise brings up the local one.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
source hack/cluster-env.sh   # sets KUBECONFIG, KUBECTL, LOCAL_CLUSTER (and brings the local cluster up when needed)

NS=${DEMO_NAMESPACE:-sessionstore-demo}
HELM=$(hack/tools/helm.sh)

step "building images"
mapfile -t archives < <(hack/build-images.sh)
if [ "$LOCAL_CLUSTER" = 1 ]; then
  for a in "${archives[@]}"; do e2e/cluster/cluster.sh load-image "$a"; done
fi

step "installing the operator with Helm (namespace sessionstore-system)"
"$HELM" upgrade --install sessionstore-operator charts/sessionstore-operator \
  --namespace sessionstore-system --create-namespace --wait --timeout 5m

step "applying examples/sessioncluster-ram.yaml in namespace $NS"
$KUBECTL create namespace "$NS" --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
$KUBECTL -n "$NS" apply -f examples/sessioncluster-ram.yaml
name=$($KUBECTL -n "$NS" get -f examples/sessioncluster-ram.yaml -o jsonpath='{.metadata.name}')

step "waiting for SessionCluster $name to be Available and Clustered"
$KUBECTL -n "$NS" wait "sessioncluster/$name" --for=condition=Available --timeout=5m
$KUBECTL -n "$NS" wait "sessioncluster/$name" --for=condition=Clustered --timeout=2m
# Available and Clustered can come while the last pod is still turning ready; show it complete.
replicas=$($KUBECTL -n "$NS" get "sessioncluster/$name" -o jsonpath='{.spec.replicas}')
$KUBECTL -n "$NS" wait "sessioncluster/$name" --for=jsonpath='{.status.readyReplicas}'="$replicas" --timeout=2m
$KUBECTL -n "$NS" get sessionclusters

step "writing a session through the client Service and reading it back"
port=$(( 20000 + RANDOM % 10000 ))
$KUBECTL -n "$NS" port-forward "svc/$name" "$port:6379" >/dev/null 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true' EXIT
apt_install redis-tools
password=$($KUBECTL -n "$NS" get secret "$name-auth" -o jsonpath='{.data.password}' | base64 -d)
for _ in $(seq 50); do redis-cli -p "$port" --no-auth-warning -a "$password" PING >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$port" --no-auth-warning -a "$password" SET sess:demo '{"user":"demo"}' EX 1800
printf 'GET sess:demo -> %s\n' "$(redis-cli -p "$port" --no-auth-warning -a "$password" GET sess:demo)"
printf 'TTL sess:demo -> %s\n' "$(redis-cli -p "$port" --no-auth-warning -a "$password" TTL sess:demo)"

cat <<TXT

SessionCluster $name is running in namespace $NS. Next:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $NS get scl $name -o yaml        # conditions and members
  kubectl -n $NS port-forward svc/$name 6379:6379 &
  redis-cli -p 6379 -a "\$(kubectl -n $NS get secret $name-auth -o jsonpath='{.data.password}' | base64 -d)"
  kubectl -n $NS scale scl $name --replicas 5
Tear the local cluster down with: e2e/cluster/cluster.sh down
TXT
