# Sourced by hack/demo.sh and hack/test.sh: picks the cluster to use and exports
#   KUBECONFIG     the kubeconfig in use
#   KUBECTL        a kubectl matching it ("kubectl" from PATH for a user's cluster)
#   LOCAL_CLUSTER  1 when the project's own local cluster is used (images must be imported)
# A cluster that KUBECONFIG (or ~/.kube/config) points at and that answers is used as it is;
# otherwise the local single-node Kubernetes of e2e/cluster is brought up (cached builds).
_user_kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
if [ -z "${SESSIONSTORE_LOCAL_CLUSTER:-}" ] && [ -f "${_user_kubeconfig%%:*}" ] && command -v kubectl >/dev/null \
   && KUBECONFIG=$_user_kubeconfig kubectl version --request-timeout=5s >/dev/null 2>&1; then
  export KUBECONFIG=$_user_kubeconfig KUBECTL=kubectl LOCAL_CLUSTER=0
  step "using the cluster at $(KUBECONFIG=$KUBECONFIG kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
else
  step "no reachable cluster: bringing up the local Kubernetes (e2e/cluster/cluster.sh up)"
  "$ROOT/e2e/cluster/cluster.sh" up
  KUBECONFIG=$("$ROOT/e2e/cluster/cluster.sh" kubeconfig)
  KUBECTL=$("$ROOT/e2e/cluster/cluster.sh" kubectl)
  export KUBECONFIG KUBECTL LOCAL_CLUSTER=1
fi
unset _user_kubeconfig
