#!/usr/bin/env bash
# Runs the end-to-end suite (e2e/tests/e2e) against a real cluster:
#   1. builds the test binary (fails fast on a compile error),
#   2. builds the images (hack/build-images.sh) and, on the project's local cluster
#      (LOCAL_CLUSTER=1), imports them into its containerd,
#   3. applies the CRD (server-side) and installs/upgrades the operator with Helm from
#      charts/sessionstore-operator into sessionstore-system,
#   4. runs `cargo test --workspace --test e2e -- --ignored --test-threads=$THREADS [FILTER...]`
#      (--workspace, not -p e2e: the same dependency features as `cargo test --workspace`, so
#      the test command does not compile kube and k8s-openapi a second time),
#   5. prints a summary (result per test, what each measured, operator restarts, total time),
#   6. cleans up: deletes the test namespaces and, unless KEEP=1, uninstalls the Helm release if
#      this run installed it.
# Exits non-zero when any step or test fails.
#
# Usage: e2e/run.sh [FILTER...]      e.g. e2e/run.sh ram_cluster scale
#   KUBECONFIG      cluster to use; when unset, hack/cluster-env.sh picks a reachable cluster or
#                   brings up the local one (and exports KUBECONFIG, KUBECTL, LOCAL_CLUSTER)
#   LOCAL_CLUSTER   1: import the images with e2e/cluster/cluster.sh load-image (default: 1 when
#                   KUBECONFIG is the local cluster's kubeconfig). On another cluster the images
#                   sessionstore/{operator,store-node}:<version> must be pullable or pre-loaded
#                   (e.g. `kind load image-archive`), or set SKIP_BUILD=1 with your own images.
#   THREADS         tests run in parallel (default 3)
#   KEEP=1          leave the Helm release installed at the end
#   SKIP_BUILD=1    do not build/import images      SKIP_INSTALL=1  use the installed operator
#   E2E_KEEP_NAMESPACES=1  keep each test's namespace (debugging; run.sh then keeps them too)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../hack/lib.sh"
cd "$ROOT"

# anyhow errors of failed tests without a backtrace each; the diagnostics say more.
export RUST_LIB_BACKTRACE=0
RELEASE=sessionstore-operator
OPERATOR_NAMESPACE=sessionstore-system
THREADS="${THREADS:-3}"
run_start=$(date +%s)

if [ -z "${KUBECONFIG:-}" ]; then
  # shellcheck source=hack/cluster-env.sh
  source hack/cluster-env.sh
fi
local_kubeconfig="$("$ROOT/e2e/cluster/cluster.sh" kubeconfig 2>/dev/null || true)"
if [ -z "${LOCAL_CLUSTER:-}" ]; then
  if [ "$KUBECONFIG" = "$local_kubeconfig" ]; then LOCAL_CLUSTER=1; else LOCAL_CLUSTER=0; fi
fi
if [ -z "${KUBECTL:-}" ]; then
  if [ "$LOCAL_CLUSTER" = 1 ]; then KUBECTL="$("$ROOT/e2e/cluster/cluster.sh" kubectl)"; else KUBECTL=kubectl; fi
fi
export KUBECONFIG KUBECTL LOCAL_CLUSTER
kubectl() { "$KUBECTL" "$@"; }
kubectl version --request-timeout=10s >/dev/null || { echo "run.sh: the cluster at KUBECONFIG=$KUBECONFIG does not answer" >&2; exit 1; }
step "cluster: $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}') (LOCAL_CLUSTER=$LOCAL_CLUSTER)"

step "cargo test --workspace --test e2e --no-run"
cargo test --workspace --test e2e --no-run

installed_here=0
log="$(mktemp)"
cleanup() {
  local status=$?
  if [ "${E2E_KEEP_NAMESPACES:-}" != 1 ]; then
    step "deleting test namespaces (label sessionstore.dev/e2e=true)"
    kubectl delete namespace -l sessionstore.dev/e2e=true --wait=true --timeout=180s >/dev/null 2>&1 \
      || echo "run.sh: some test namespaces were still terminating after 180s" >&2
  fi
  if [ "$installed_here" = 1 ] && [ "${KEEP:-}" != 1 ]; then
    step "helm uninstall $RELEASE (KEEP=1 keeps it; the CRD stays, as helm never deletes CRDs)"
    "$HELM" uninstall "$RELEASE" -n "$OPERATOR_NAMESPACE" --wait --timeout 2m >/dev/null || status=1
    kubectl delete namespace "$OPERATOR_NAMESPACE" --wait=false >/dev/null 2>&1 || true
  fi
  rm -f "$log"
  step "run.sh finished in $(( $(date +%s) - run_start ))s with status $status"
  exit "$status"
}
trap cleanup EXIT

HELM="$(hack/tools/helm.sh)"

images_tag=none
if [ "${SKIP_BUILD:-}" != 1 ]; then
  step "building images (hack/build-images.sh)"
  mapfile -t archives < <(hack/build-images.sh)
  [ ${#archives[@]} -gt 0 ] || { echo "run.sh: hack/build-images.sh printed no archive" >&2; exit 1; }
  # The archive names are content hashes: a pod template annotation made of them rolls the
  # operator exactly when an image changed (the tag itself stays <version>).
  images_tag="$(basename -a "${archives[@]}" | sed 's/\.tar$//' | sort | tr '\n' '.' | sed 's/\.$//')"
  if [ "$LOCAL_CLUSTER" = 1 ]; then
    for archive in "${archives[@]}"; do
      step "importing $archive into the local cluster"
      e2e/cluster/cluster.sh load-image "$archive" >&2
    done
  else
    echo "run.sh: not the local cluster: make sure the cluster can pull these images:" >&2
    printf '  %s\n' "${archives[@]}" >&2
  fi
fi

# `rollout status` returns once the new operator pods are ready, while the pods they replace may
# still be terminating (after `make demo`, the upgrade below always rolls the Deployment: its pod
# annotation names the images). Tests compare the operator's pods before and after their
# scenario, so they start only when the Deployment's replicas are the only pods left.
wait_for_current_operator_pods() {
  local selector want pods
  selector="$(kubectl -n "$OPERATOR_NAMESPACE" get "deployment/$RELEASE" \
    -o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}')"
  selector="${selector%,}"
  want="$(kubectl -n "$OPERATOR_NAMESPACE" get "deployment/$RELEASE" -o jsonpath='{.spec.replicas}')"
  for _ in $(seq 120); do
    pods="$(kubectl -n "$OPERATOR_NAMESPACE" get pods -l "$selector" \
      -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}')"
    if [ "$(grep -c . <<< "$pods")" = "$want" ] && ! awk 'NF > 1 {found=1} END {exit !found}' <<< "$pods"; then
      step "operator pods: $(awk '{print $1}' <<< "$pods" | tr '\n' ' ')"
      return 0
    fi
    sleep 1
  done
  echo "run.sh: old operator pods still there after 120s:" >&2
  echo "$pods" >&2
  return 1
}

if [ "${SKIP_INSTALL:-}" != 1 ]; then
  step "CRD (server-side apply; helm installs CRDs but never upgrades them)"
  kubectl apply --server-side --force-conflicts -f charts/sessionstore-operator/crds/ >/dev/null
  # Not `kubectl wait --for=condition=Established`: on a CRD created a moment ago it fails at once
  # with ".status.conditions accessor error: <nil>" instead of waiting (kubectl 1.33).
  crd=crd/sessionclusters.sessionstore.dev
  for _ in $(seq 60); do
    established="$(kubectl get "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null || true)"
    [ "$established" = True ] && break
    sleep 1
  done
  [ "$established" = True ] || { echo "run.sh: $crd not Established after 60s" >&2; kubectl get "$crd" -o yaml >&2; exit 1; }
  if ! "$HELM" status "$RELEASE" -n "$OPERATOR_NAMESPACE" >/dev/null 2>&1; then installed_here=1; fi
  step "helm upgrade --install $RELEASE charts/sessionstore-operator -n $OPERATOR_NAMESPACE"
  "$HELM" upgrade --install "$RELEASE" charts/sessionstore-operator \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace \
    --set-string "podAnnotations.sessionstore\.dev/images=$images_tag" \
    --wait --timeout 5m >/dev/null
  kubectl -n "$OPERATOR_NAMESPACE" rollout status "deployment/$RELEASE" --timeout=180s
  wait_for_current_operator_pods
else
  "$HELM" status "$RELEASE" -n "$OPERATOR_NAMESPACE" >/dev/null || { echo "run.sh: SKIP_INSTALL=1 but release $RELEASE is not installed in $OPERATOR_NAMESPACE" >&2; exit 1; }
fi

operator_restarts() {
  kubectl -n "$OPERATOR_NAMESPACE" get pods -l "app.kubernetes.io/instance=$RELEASE" \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{range .status.containerStatuses[*]}{.restartCount}{end}{"\n"}{end}'
}

# Known failures, skipped unless E2E_RUN_KNOWN_FAILURES=1 (each is an open defect, listed in
# e2e/README.md; add `--skip <test>` here with a line saying what fails, remove it once the
# test passes again). None at present.
known_failures=()
if [ "${E2E_RUN_KNOWN_FAILURES:-}" != 1 ]; then
  known_failures=()
fi
step "cargo test --workspace --test e2e -- --ignored --test-threads=$THREADS ${known_failures[*]} $*"
test_start=$(date +%s)
set +e
E2E_OPERATOR_NAMESPACE="$OPERATOR_NAMESPACE" E2E_OPERATOR_NAME="$RELEASE" \
  cargo test --workspace --test e2e -- --ignored --nocapture --test-threads="$THREADS" "${known_failures[@]}" "$@" 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
set -e
test_seconds=$(( $(date +%s) - test_start ))

step "summary"
echo "results:"
grep -E '^test [a-z_:]+ \.\.\. (ok|FAILED|ignored)' "$log" | sed 's/^/  /' || true
echo "measured:"
grep -E '^E2E-MEASURE ' "$log" | sed 's/^E2E-MEASURE /  /' || true
echo "failures:"
grep -E '^\[[a-z-]+\] FAILED' "$log" | cut -c1-400 | sed 's/^/  /' || echo "  none"
echo "operator pods (name restarts):"
restarts="$(operator_restarts)"
while read -r line; do echo "  $line"; done <<< "$restarts"
grep -E '^test result:' "$log" | sed 's/^/  /' || true
echo "tests took ${test_seconds}s; whole run $(( $(date +%s) - run_start ))s"
if echo "$restarts" | awk '$2 > 0 {bad=1} END {exit !bad}'; then
  echo "run.sh: an operator pod restarted during the run" >&2
  test_status=1
fi
[ "$test_status" = 0 ] || exit 1
