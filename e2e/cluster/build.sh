#!/usr/bin/env bash
# Builds (once, cached by version) every binary the local cluster runs, from Go modules through
# the module proxy: Kubernetes components, etcd, CoreDNS, and the small helpers in go/.
# Usage: build.sh [all|k8s|etcd|coredns|tools]
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
K8S_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)

need_go() {
  command -v go >/dev/null || die "go is required to build the cluster binaries (Go >= 1.24)"
}

# go_build_module DIR OUTDIR LDFLAGS PKG...: builds PKGs of the module in DIR (go.mod already
# written) into OUTDIR, atomically: binaries appear only when all of them are built.
go_build_module() {
  local dir=$1 out=$2 ldflags=$3; shift 3
  local tmp="$out.tmp.$$"
  rm -rf "$out".tmp.*; mkdir -p "$tmp"   # also what an interrupted build left
  ( cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "$@" )
  mkdir -p "$out"
  mv "$tmp"/* "$out/"
  rmdir "$tmp"
}

build_k8s() {
  local have=1 c
  for c in "${K8S_CMDS[@]}"; do [ -x "$K8S_BIN/$c" ] || have=0; done
  [ $have = 1 ] && return 0
  need_go
  step "building Kubernetes $K8S_VERSION (${K8S_CMDS[*]}); cold: ~15 min on 2 cores, with etcd and CoreDNS"
  local src="$SESSIONSTORE_CACHE/k8s/$K8S_VERSION/src"
  mkdir -p "$src"
  {
    echo "module sessionstore.local/k8sbuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for s in "${K8S_STAGING[@]}"; do echo "	k8s.io/$s => k8s.io/$s $K8S_STAGING_VERSION"; done
    echo ")"
  } > "$src/go.mod"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
  local ld="" p
  for p in $v $cv; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  local pkgs=()
  for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go_build_module "$src" "$K8S_BIN" "$ld" "${pkgs[@]}"
}

build_etcd() {
  [ -x "$ETCD_DIR/etcd" ] && return 0
  need_go
  step "building etcd $ETCD_VERSION"
  local src="$ETCD_DIR/src"
  mkdir -p "$src"
  printf 'module sessionstore.local/etcdbuild\n\ngo 1.23.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$src/go.mod"
  go_build_module "$src" "$ETCD_DIR/bin" "" go.etcd.io/etcd/server/v3
  mv "$ETCD_DIR"/bin/* "$ETCD_DIR/etcd"   # binary is named after the module path
  rmdir "$ETCD_DIR/bin" 2>/dev/null || true
}

build_coredns() {
  [ -x "$COREDNS_DIR/coredns" ] && return 0
  need_go
  step "building CoreDNS $COREDNS_VERSION"
  local src="$COREDNS_DIR/src"
  mkdir -p "$src"
  printf 'module sessionstore.local/corednsbuild\n\ngo 1.25.0\n\nrequire github.com/coredns/coredns %s\n' \
    "$COREDNS_VERSION" > "$src/go.mod"
  go_build_module "$src" "$COREDNS_DIR/bin" "" github.com/coredns/coredns
  mv "$COREDNS_DIR/bin/coredns" "$COREDNS_DIR/coredns"
  rmdir "$COREDNS_DIR/bin" 2>/dev/null || true
}

# The helpers in go/ (pause, nettest) are cached by the hash of their sources.
tools_hash() { (cd "$CLUSTER_DIR/go" && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16); }
tools_dir() { echo "$TOOLS_DIR/$(tools_hash)"; }
build_tools() {
  local out; out=$(tools_dir)
  [ -x "$out/pause" ] && [ -x "$out/nettest" ] && return 0
  need_go
  step "building cluster helpers (pause, nettest)"
  local src="$out/src"
  rm -rf "$src"; mkdir -p "$src"; cp -r "$CLUSTER_DIR/go/." "$src/"
  go_build_module "$src" "$out" "" ./pause ./nettest
  rm -rf "$src"
  # builds of older sources
  find "$TOOLS_DIR" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$out")" -exec rm -rf {} +
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  what=${1:-all}
  case $what in
    all) build_tools; build_etcd; build_coredns; build_k8s ;;
    k8s|etcd|coredns|tools) "build_$what" ;;
    *) die "usage: $0 [all|k8s|etcd|coredns|tools]" ;;
  esac
fi
