# shellcheck shell=bash disable=SC2034
# Shared helpers and paths of the local cluster scripts. Source it.
set -Eeuo pipefail
# a failing command never ends a script silently
trap 'printf "ERROR: %s failed (exit %s) at %s:%s\n" "$BASH_COMMAND" "$?" "${BASH_SOURCE[0]##*/}" "$LINENO" >&2' ERR
CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
. "$CLUSTER_DIR/versions.sh"

export SESSIONSTORE_CACHE="${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}"
K8S_BIN="$SESSIONSTORE_CACHE/k8s/$K8S_VERSION/bin"
COREDNS_DIR="$SESSIONSTORE_CACHE/coredns/$COREDNS_VERSION"
ETCD_DIR="$SESSIONSTORE_CACHE/etcd/$ETCD_VERSION"
IMAGES_DIR="$SESSIONSTORE_CACHE/images"
TOOLS_DIR="$SESSIONSTORE_CACHE/cluster-tools"   # small Go helpers (pause, nettest)
# Runtime state of the running cluster (PKI, pids, logs, data). Not a cache: `down` wipes the
# volatile parts, PKI and the kubeconfig stay so paths remain stable.
STATE_DIR="${SESSIONSTORE_CLUSTER_STATE:-$SESSIONSTORE_CACHE/cluster}"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"

# Network: everything lives on one bridge with its own address, which is the node IP.
BRIDGE=ssbr0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
NODE_NAME=sessionstore-node
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
ETCD_CLIENT_PORT=23790   # loopback only; uncommon ports so nothing collides
ETCD_PEER_PORT=23800
CGROUP_ROOT_NAME=sessionstore-kubepods

# Images (fully qualified, as the kubelet looks them up).
PAUSE_IMAGE=docker.io/sessionstore/pause:local
COREDNS_IMAGE=docker.io/sessionstore/coredns:${COREDNS_VERSION#v}
NETTEST_IMAGE=docker.io/sessionstore/nettest:local


T0=${CLUSTER_T0:-$(date +%s)}
export CLUSTER_T0=$T0
step() { printf '==> [%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# apt_install PKG...: installs missing Debian packages (apt-get update once per run).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >&2; export APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# kubectl of the local cluster; its discovery cache stays in the state dir, not ~/.kube
kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" --cache-dir "$STATE_DIR/kube-cache" "$@"; }
