#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, everything on one local bridge.
#
#   cluster.sh up                      build (cached) and start; idempotent, cleans crash leftovers
#   cluster.sh down                    delete workloads, stop everything, restore the machine
#   cluster.sh status                  exit 0 when up and healthy (prints component states)
#   cluster.sh load-image ARCHIVE [NAME]  import an OCI/docker archive into the node's containerd
#   cluster.sh kubeconfig              print the admin kubeconfig path
#   cluster.sh kubectl [ARGS...]       run kubectl with the admin kubeconfig (no ARGS: print its path)
#   cluster.sh ctr ARGS...             run ctr against the node's containerd (namespace k8s.io)
#
# See e2e/cluster/README.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$CLUSTER_DIR/build.sh"
. "$CLUSTER_DIR/pki.sh"
. "$CLUSTER_DIR/net.sh"
. "$CLUSTER_DIR/config.sh"
. "$CLUSTER_DIR/images.sh"

RUN_DIR=/run/sessionstore-cluster        # pids, sockets, containerd state, records of the machine
# A running cluster keeps the state dir it was started with, whatever SESSIONSTORE_CACHE says now.
if [ -f "$RUN_DIR/state-dir" ] && [ "$(cat "$RUN_DIR/state-dir")" != "$STATE_DIR" ]; then
  STATE_DIR=$(cat "$RUN_DIR/state-dir")
  KUBECONFIG_PATH="$STATE_DIR/kubeconfig"
  PKI="$STATE_DIR/pki"
fi
PID_DIR="$RUN_DIR/pids"
RECORD_DIR="$RUN_DIR/record"             # what the machine looked like before the first `up`
CONF_DIR="$STATE_DIR/config"
VAR_DIR="$STATE_DIR/var"                 # etcd data, kubelet root, pod logs, IPAM: wiped by `down`
LOG_DIR="$STATE_DIR/logs"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"

# Components in start order; `down` stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy provisioner)

# sysctls the kubelet, kube-proxy and the CNI bridge plugin may change: recorded, then restored.
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding net.ipv6.conf.all.forwarding
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait
  net.netfilter.nf_conntrack_udp_timeout net.netfilter.nf_conntrack_udp_timeout_stream
  net.netfilter.nf_conntrack_tcp_be_liberal)
# Host paths the components create whatever their configuration: removed by `down` when absent
# before the first `up` (only what we put there).
# (the kubelet's device manager always uses /var/lib/kubelet/device-plugins)
HOST_DIRS=(/var/log/containers /var/log/pods /var/lib/cni /run/containerd /run/netns /var/lib/kubelet
  /usr/libexec/kubernetes)

# ---------------------------------------------------------------------------------------------
# cgroups: the pods' cgroup root is nested under this shell's memory cgroup (the same path is
# created in every v1 hierarchy) so the session's memory accounting covers them.

cgroup_root_path() {
  local base
  base=$(awk -F: '$2=="memory" {print $3}' /proc/self/cgroup)
  [ -n "$base" ] || base=/
  [ "$base" = / ] && base=""
  echo "$base/$CGROUP_ROOT_NAME"
}

# every v1 hierarchy, and the cgroup2 mount of a hybrid setup (runc mirrors the path there)
cgroup_hierarchies() {
  awk '$3=="cgroup" || $3=="cgroup2" {print $2}' /proc/mounts
}

cgroups_up() {
  local h rel d cur
  : > "$RUN_DIR/cgroups-created.tmp"
  for h in $(cgroup_hierarchies); do
    cur=$h
    IFS=/ read -ra parts <<<"${CG_ROOT#/}"
    for rel in "${parts[@]}"; do
      d="$cur/$rel"
      if [ ! -d "$d" ]; then
        mkdir "$d"
        echo "$d" >> "$RUN_DIR/cgroups-created.tmp"
      fi
      if [ -f "$cur/cpuset.cpus" ]; then
        [ -s "$d/cpuset.cpus" ] && [ -n "$(cat "$d/cpuset.cpus")" ] || cat "$cur/cpuset.cpus" > "$d/cpuset.cpus"
        [ -n "$(cat "$d/cpuset.mems")" ] || cat "$cur/cpuset.mems" > "$d/cpuset.mems"
      fi
      cur=$d
    done
  done
  cat "$RUN_DIR/cgroups-created.tmp" >> "$RUN_DIR/cgroups-created"
  rm -f "$RUN_DIR/cgroups-created.tmp"
}

# pids of every process in the pods' cgroup subtree
cgroup_pids() {
  local root h
  root=$(cat "$RUN_DIR/cgroup-root" 2>/dev/null) || return 0
  for h in $(cgroup_hierarchies); do
    [ -d "$h$root" ] && find "$h$root" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}

cgroups_down() {
  local root h pid n=0
  root=$(cat "$RUN_DIR/cgroup-root" 2>/dev/null) || return 0
  # anything still running in there is a container we started
  while [ -n "$(cgroup_pids)" ] && [ $n -lt 10 ]; do
    for pid in $(cgroup_pids); do kill -9 "$pid" 2>/dev/null || true; done
    sleep 0.5; n=$((n + 1))
  done
  for h in $(cgroup_hierarchies); do
    [ -d "$h$root" ] && find "$h$root" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # the intermediate directories created for the nesting, deepest first
  if [ -f "$RUN_DIR/cgroups-created" ]; then
    sort -r -u "$RUN_DIR/cgroups-created" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    rm -f "$RUN_DIR/cgroups-created"
  fi
  for h in $(cgroup_hierarchies); do
    [ -d "$h$root" ] && info "WARNING: cgroup $h$root could not be removed"
  done
  rm -f "$RUN_DIR/cgroup-root"
}

# ---------------------------------------------------------------------------------------------
# Records of the machine before the first `up`, restored by `down`.

record_machine() {
  [ -f "$RECORD_DIR/complete" ] && return 0
  mkdir -p "$RECORD_DIR"
  local s d
  : > "$RECORD_DIR/sysctls"
  for s in "${SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(sysctl -n "$s")" >> "$RECORD_DIR/sysctls"
  done
  : > "$RECORD_DIR/absent-dirs"
  for d in "${HOST_DIRS[@]}"; do [ -e "$d" ] || echo "$d" >> "$RECORD_DIR/absent-dirs"; done
  list_kube_chains > "$RECORD_DIR/kube-chains-before"
  { iptables-save 2>/dev/null || true; } | { grep -v "^#" || true; } | sed "s/\[[0-9:]*\]//" > "$RECORD_DIR/iptables-before"
  ls /run/netns 2>/dev/null > "$RECORD_DIR/netns-before" || true
  nft list tables > "$RECORD_DIR/nft-tables-before"
  nfacct_names > "$RECORD_DIR/nfacct-before"
  touch "$RECORD_DIR/complete"
}

restore_sysctls() {
  [ -f "$RECORD_DIR/sysctls" ] || return 0
  local line k v cur
  while IFS= read -r line; do
    k=${line%%=*}; v=${line#*=}
    cur=$(sysctl -n "$k" 2>/dev/null) || continue
    if [ "$cur" != "$v" ]; then
      sysctl -q -w "$k=$v" >/dev/null 2>&1 && info "restored $k: $cur -> $v" || info "WARNING: could not restore $k=$v"
    fi
  done < "$RECORD_DIR/sysctls"
}

# iptables-nft creates the nftables tables (ip/ip6 filter, nat, mangle) on first use; remove
# those that did not exist before and hold no rule any more.
restore_nft_tables() {
  [ -f "$RECORD_DIR/nft-tables-before" ] || return 0
  command -v nft >/dev/null || return 0
  local fam name rules
  nft list tables | while read -r _ fam name; do
    grep -qx "table $fam $name" "$RECORD_DIR/nft-tables-before" && continue
    case $fam in ip|ip6) ;; *) continue ;; esac
    rules=$(nft list table "$fam" "$name" | grep -P '^\t\t' | grep -cvP '^\t\ttype ' || true)
    if [ "$rules" = 0 ]; then nft delete table "$fam" "$name"
    else info "NOTE: nftables table $fam $name (created while the cluster ran) still has $rules rules; left"; fi
  done
}

# kube-proxy creates nfacct counters (ct_state_invalid_dropped_pkts, ...) that outlive it
nfacct_names() { nfacct list 2>/dev/null | sed -n 's/.* = \(.*\);$/\1/p'; }
restore_nfacct() {
  [ -f "$RECORD_DIR/nfacct-before" ] || return 0
  local n
  for n in $(nfacct_names); do
    grep -qx "$n" "$RECORD_DIR/nfacct-before" || nfacct delete "$n" 2>/dev/null || info "WARNING: nfacct $n still in use"
  done
}

restore_dirs() {
  [ -f "$RECORD_DIR/absent-dirs" ] || return 0
  local d
  # libcni result cache entries of our network and of containerd's built-in loopback network
  # (left when a crash prevented the CNI DEL)
  rm -f /var/lib/cni/results/sessionstore-* 2>/dev/null || true
  grep -qx /var/lib/cni "$RECORD_DIR/absent-dirs" && rm -f /var/lib/cni/results/cni-loopback-*
  # sockets of shims killed in a crash; only when no system containerd uses /run/containerd
  if grep -qx /run/containerd "$RECORD_DIR/absent-dirs" && [ ! -e /run/containerd/containerd.sock ]; then
    find /run/containerd/s -maxdepth 1 -type s -delete 2>/dev/null || true
  fi
  grep -qx /var/lib/kubelet "$RECORD_DIR/absent-dirs" && rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  # container log symlinks the kubelet made into our pod logs dir
  find /var/log/containers -maxdepth 1 -type l -lname "$VAR_DIR/*" -delete 2>/dev/null || true
  while read -r d; do
    [ -d "$d" ] || continue
    mountpoint -q "$d" && continue         # never unmount /run/netns itself
    find "$d" -depth -type d -empty -delete 2>/dev/null || true
    [ -d "$d" ] && info "NOTE: $d is not empty, left in place: $(ls -A "$d" | head -3 | tr '\n' ' ')"
  done < "$RECORD_DIR/absent-dirs"
}

# ---------------------------------------------------------------------------------------------
# Processes: started with setsid (they outlive this script), tracked by PID and executable.

pid_of() {
  local name=$1 pid exe
  pid=$(cat "$PID_DIR/$name.pid" 2>/dev/null) || return 1
  exe=$(cat "$PID_DIR/$name.exe" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
  echo "$pid"
}

start_proc() {
  local name=$1 bin; bin=$(readlink -f "$2"); shift 2
  if pid_of "$name" >/dev/null; then info "$name already running"; return 0; fi
  mkdir -p "$PID_DIR" "$LOG_DIR"
  # keep logs bounded: one previous generation
  if [ "$(stat -c %s "$LOG_DIR/$name.log" 2>/dev/null || echo 0)" -gt 50000000 ]; then
    mv "$LOG_DIR/$name.log" "$LOG_DIR/$name.log.1"
  fi
  printf '\n==== %s %s %s\n' "$(date -Is)" "$bin" "$*" >> "$LOG_DIR/$name.log"
  (
    # A daemon must not inherit the caller's descriptors: it would hold them for the cluster's
    # lifetime (a `flock FILE cluster.sh up` lock never released, a CI log pipe never closed).
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    exec setsid "$bin" "$@" >> "$LOG_DIR/$name.log" 2>&1 < /dev/null
  ) &
  local pid=$!
  echo "$pid" > "$PID_DIR/$name.pid"
  echo "$bin" > "$PID_DIR/$name.exe"
  # Until the subshell has closed its descriptors and exec'd (through setsid) the binary, its
  # /proc exe is bash or setsid and pid_of says "not running": a caller polling at once took
  # that for an exit ("containerd exited" while it was starting). Wait for the exec, or the end.
  for _ in $(seq 1 100); do
    if pid_of "$name" >/dev/null || ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
}

stop_proc() {
  local name=$1 pid t; t=$(date +%s)
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    # gone, or a zombie nobody reaped yet (its exe link is gone): either way it has stopped
    for _ in $(seq 1 150); do pid_of "$name" >/dev/null || break; sleep 0.1; done
    if pid_of "$name" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    info "stopped $name (pid $pid, $(( $(date +%s) - t ))s)"
  fi
  rm -f "$PID_DIR/$name.pid" "$PID_DIR/$name.exe"
}

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: polls COMMAND every 0.5 s. When DESCRIPTION is a
# component name, fails as soon as that process is gone, showing the end of its log.
wait_for() {
  local desc=$1 timeout=$2; shift 2
  local end=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if [ -f "$PID_DIR/$desc.pid" ] && ! pid_of "$desc" >/dev/null; then
      tail -n 15 "$LOG_DIR/$desc.log" >&2
      die "$desc exited (log: $LOG_DIR/$desc.log)"
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      die "timed out after ${timeout}s waiting for $desc (logs: $LOG_DIR)"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# Health checks

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
h_containerd() { [ -S "$CONTAINERD_SOCK" ] && ctr --address "$CONTAINERD_SOCK" version; }
h_etcd() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'; }
h_kube-apiserver() { kc get --raw /readyz --request-timeout=3s; }
h_kube-controller-manager() { curl -fsSk --max-time 2 https://127.0.0.1:10257/healthz; }
h_kube-scheduler() { curl -fsSk --max-time 2 https://127.0.0.1:10259/healthz; }
h_kubelet() { curl -fsS --max-time 2 http://127.0.0.1:10248/healthz; }
h_kube-proxy() { curl -fsS --max-time 2 http://127.0.0.1:10256/healthz; }
h_provisioner() { pid_of provisioner; }
node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
coredns_ready() {
  [ "$(kc -n kube-system get deploy coredns -o jsonpath='{.status.availableReplicas}' 2>/dev/null)" = 1 ]
}

# ---------------------------------------------------------------------------------------------

start_all() {
  local CG_ROOT; CG_ROOT=$(cat "$RUN_DIR/cgroup-root")

  step "containerd"
  mkdir -p "$RUN_DIR/containerd"
  start_proc containerd /usr/bin/containerd --config "$CONF_DIR/containerd.toml"
  wait_for containerd 30 h_containerd
  # a fresh cluster has no pods: forget containers a crashed run left in containerd's metadata
  local c
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    ctr_ tasks rm -f "$c" >/dev/null 2>&1 || true
    ctr_ containers rm "$c" >/dev/null 2>&1 || true
  done

  step "images (pause, CoreDNS, nettest)"
  import_cluster_images

  step "etcd $ETCD_VERSION"
  start_proc etcd "$ETCD_DIR/etcd" --name sessionstore --data-dir "$VAR_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "sessionstore=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" --unsafe-no-fsync --log-level warn \
    --quota-backend-bytes 2147483648 --auto-compaction-retention 5m --auto-compaction-mode periodic
  wait_for etcd 30 h_etcd

  step "kube-apiserver $K8S_VERSION"
  start_proc kube-apiserver "$K8S_BIN/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --endpoint-reconciler-type lease \
    --v 1
  wait_for kube-apiserver 90 h_kube-apiserver

  step "kube-controller-manager, kube-scheduler"
  local cm="$STATE_DIR/kubeconfigs/controller-manager.kubeconfig" sc="$STATE_DIR/kubeconfigs/scheduler.kubeconfig"
  start_proc kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$cm" --authentication-kubeconfig "$cm" --authorization-kubeconfig "$cm" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
    --flex-volume-plugin-dir "$VAR_DIR/volume-plugins" \
    --profiling=false --v 1
  # A pod rejected for an unbound claim waits for the claim's update event, and the scheduler
  # sometimes misses it (kubernetes/kubernetes#87145): a CI run's smoke pod stayed Pending with
  # its claim Bound. The default 5 min before such a pod is retried anyway is cut to 15 s.
  start_proc kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$sc" --authentication-kubeconfig "$sc" --authorization-kubeconfig "$sc" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false \
    --pod-max-in-unschedulable-pods-duration 15s --v 1

  step "kubelet, kube-proxy"
  mkdir -p "$VAR_DIR/kubelet" "$VAR_DIR/pod-logs"
  start_proc kubelet "$K8S_BIN/kubelet" --config "$CONF_DIR/kubelet.yaml" \
    --kubeconfig "$STATE_DIR/kubeconfigs/kubelet.kubeconfig" --root-dir "$VAR_DIR/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  start_proc kube-proxy "$K8S_BIN/kube-proxy" --config "$CONF_DIR/kube-proxy.yaml" --v 1
  wait_for kube-controller-manager 60 h_kube-controller-manager
  wait_for kube-scheduler 60 h_kube-scheduler
  wait_for kubelet 60 h_kubelet
  wait_for "node $NODE_NAME Ready" 90 node_ready
  wait_for kube-proxy 60 h_kube-proxy

  step "default StorageClass standard (hostPath volumes in $VAR_DIR/pv)"
  kc apply -f "$CLUSTER_DIR/manifests/storageclass.yaml" >/dev/null
  start_proc provisioner "$(command -v bash)" "$CLUSTER_DIR/provisioner.sh" "$VAR_DIR/pv"

  step "CoreDNS $COREDNS_VERSION at $DNS_IP"
  sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@DNS_IP@|$DNS_IP|g" \
    -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" "$CLUSTER_DIR/manifests/coredns.yaml" | kc apply -f - >/dev/null
  wait_for "CoreDNS available" 90 coredns_ready
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "cluster.sh must run as root (it starts a kubelet and containerd)"
  [ "$(uname -s)" = Linux ] || die "the local cluster needs Linux"
  step "cluster up (Kubernetes $K8S_VERSION, state $STATE_DIR)"
  if cluster_healthy >/dev/null 2>&1; then
    step "already up and healthy; refreshing the cluster images"
    build_tools
    build_cluster_images
    import_cluster_images
    echo "$KUBECONFIG_PATH"
    return 0
  fi
  if [ -d "$RUN_DIR" ] && [ -n "$(ls -A "$RUN_DIR" 2>/dev/null)" ]; then
    step "cleaning leftovers of an earlier run"
    down_all quiet
  fi
  apt_install containerd runc containernetworking-plugins iptables nftables nfacct podman conntrack iproute2 openssl curl
  # cold machine: Kubernetes (the longest) builds alongside etcd and CoreDNS
  local kpid
  build_k8s & kpid=$!
  build_tools; build_etcd; build_coredns
  wait "$kpid" || die "building Kubernetes failed"
  build_cluster_images

  if [ ! -f "$RECORD_DIR/complete" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then
    # our bridge without our records (e.g. /run/sessionstore-cluster was removed by hand)
    step "removing the bridge and KUBE-* chains of an unrecorded earlier run"
    net_down
  fi
  step "recording the machine, PKI, cgroups, network"
  mkdir -p "$RUN_DIR" "$PID_DIR" "$VAR_DIR" "$LOG_DIR" "$CONF_DIR"
  echo "$STATE_DIR" > "$RUN_DIR/state-dir"
  record_machine
  pki_setup
  cgroup_root_path > "$RUN_DIR/cgroup-root"
  local CG_ROOT; CG_ROOT=$(cat "$RUN_DIR/cgroup-root")
  cgroups_up
  net_up
  write_configs

  start_all
  step "cluster up: kubectl --kubeconfig $KUBECONFIG_PATH"
  echo "$KUBECONFIG_PATH"
}

cluster_healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
  h_kube-apiserver && node_ready && coredns_ready && guard_present
}

cmd_status() {
  local c pid ok=0 any=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then
      any=1
      if "h_$c" >/dev/null 2>&1; then printf '%-24s running (pid %s), healthy\n' "$c" "$pid"
      else printf '%-24s running (pid %s), NOT healthy\n' "$c" "$pid"; ok=1; fi
    else
      printf '%-24s not running\n' "$c"; ok=1
    fi
  done
  if [ $any = 0 ]; then
    if [ -d "$RUN_DIR" ]; then echo "cluster: down, with leftovers of an earlier run (cluster.sh down or up cleans them)"
    else echo "cluster: down"; fi
    return 1
  fi
  if guard_present; then echo "network: bridge $BRIDGE $NODE_IP, guard rules in place"
  else echo "network: guard rules MISSING"; ok=1; fi
  if node_ready; then echo "node $NODE_NAME: Ready"; else echo "node $NODE_NAME: NOT Ready"; ok=1; fi
  if coredns_ready; then echo "CoreDNS: available at $DNS_IP"; else echo "CoreDNS: NOT available"; ok=1; fi
  if [ $ok = 0 ]; then
    local rss; rss=$(cluster_rss_mb)
    echo "cluster: up and healthy (RSS ${rss} MB incl. pods); KUBECONFIG=$KUBECONFIG_PATH"
  else
    echo "cluster: DEGRADED (logs in $LOG_DIR)"
  fi
  return $ok
}

cluster_rss_mb() {
  local c pid kb=0 p
  for c in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c") && kb=$((kb + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  for p in $(cgroup_pids) $(shim_pids); do
    kb=$((kb + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo $((kb / 1024))
}

# containerd shims of our containerd: identified by our (unique) containerd socket address
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q -- "-address $CONTAINERD_SOCK " && echo "${p#/proc/}"
  done
  return 0
}

unmount_ours() {
  local m
  # every mount below our state/run dirs (kubelet volumes, container rootfs, netns files)
  for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($STATE_DIR|$RUN_DIR)/" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || info "WARNING: could not unmount $m"
  done
  # netns mounts under /run/netns created since the record (older containerd layouts)
  if [ -d /run/netns ] && [ -f "$RECORD_DIR/netns-before" ]; then
    for m in /run/netns/cni-*; do
      [ -e "$m" ] || continue
      grep -qx "$(basename "$m")" "$RECORD_DIR/netns-before" && continue
      umount "$m" 2>/dev/null; rm -f "$m"
    done
  fi
}

delete_workloads() {
  h_kube-apiserver >/dev/null 2>&1 && pid_of kubelet >/dev/null || return 0
  step "deleting workloads (so the CNI DEL runs)"
  # nothing may recreate or reschedule what is deleted
  stop_proc kube-controller-manager
  stop_proc kube-scheduler
  kc delete pods --all --all-namespaces --grace-period=5 --wait=true --timeout=90s >/dev/null 2>&1 \
    || info "WARNING: not every pod was deleted in time"
  # wait for the kubelet to tear the sandboxes down
  for _ in $(seq 1 60); do
    [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break
    sleep 0.5
  done
}

down_all() {
  local quiet=${1:-}
  delete_workloads || true
  step "stopping components"
  stop_proc provisioner
  stop_proc kube-proxy
  stop_proc kubelet
  stop_proc kube-scheduler
  stop_proc kube-controller-manager
  # containers the kubelet did not get to (crash leftovers): kill and forget them
  if h_containerd >/dev/null 2>&1; then
    local t c
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$t" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1 || true; done
  fi
  cgroups_kill
  stop_proc containerd
  local p
  for p in $(shim_pids); do kill -KILL "$p" 2>/dev/null && info "killed leftover shim $p"; done
  stop_proc kube-apiserver
  stop_proc etcd
  step "restoring the machine"
  unmount_ours
  net_down
  cgroups_down
  restore_sysctls
  restore_nfacct
  restore_nft_tables
  restore_dirs
  rm -rf "$VAR_DIR" "$CONF_DIR"
  rm -rf "$RUN_DIR/containerd" "$RUN_DIR/runc" "$RUN_DIR/runc-v1" "$PID_DIR" "$RUN_DIR/state-dir"
  if [ -z "$quiet" ]; then
    rm -rf "$RECORD_DIR"
    rmdir "$RUN_DIR" 2>/dev/null || info "NOTE: $RUN_DIR not empty: $(ls -A "$RUN_DIR")"
  fi
}

cgroups_kill() {
  local n=0 pid
  while [ -n "$(cgroup_pids)" ] && [ $n -lt 10 ]; do
    for pid in $(cgroup_pids); do kill -9 "$pid" 2>/dev/null || true; done
    sleep 0.3; n=$((n + 1))
  done
}

cmd_down() {
  [ "$(id -u)" = 0 ] || die "cluster.sh must run as root"
  if [ ! -d "$RUN_DIR" ]; then step "cluster is not up (nothing recorded in $RUN_DIR)"; return 0; fi
  step "cluster down"
  down_all
  verify_restored
  step "cluster down: machine restored"
}

# Reports anything of ours still present on the machine.
verify_restored() {
  local bad=0 c
  ip link show "$BRIDGE" >/dev/null 2>&1 && { info "LEFTOVER: bridge $BRIDGE"; bad=1; }
  c=$(list_kube_chains | wc -l); [ "$c" = 0 ] || { info "LEFTOVER: $c KUBE-* iptables chains"; bad=1; }
  iptables-save 2>/dev/null | grep -q "$GUARD_CHAIN" && { info "LEFTOVER: guard chain"; bad=1; }
  grep -qE " ($STATE_DIR|$RUN_DIR)/" /proc/self/mountinfo && { info "LEFTOVER: mounts under our dirs"; bad=1; }
  [ -n "$(shim_pids)" ] && { info "LEFTOVER: containerd shims"; bad=1; }
  return $bad
}

cmd_load_image() {
  [ $# -ge 1 ] || die "usage: cluster.sh load-image OCI-ARCHIVE [IMAGE-NAME]"
  h_containerd >/dev/null 2>&1 || die "the cluster's containerd is not running (cluster.sh up)"
  import_archive "$@"
}

# up and down of one machine's cluster never overlap (a second `up` waits, then finds it healthy)
lock() {
  mkdir -p "$SESSIONSTORE_CACHE"
  exec 9> "$SESSIONSTORE_CACHE/cluster.lock"
  flock -n 9 || { step "waiting for another cluster.sh up/down"; flock 9; }
}

case ${1:-} in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  status) trap - ERR; cmd_status ;;
  load-image) shift; cmd_load_image "$@" ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  ctr) shift; trap - ERR; ctr_ "$@" ;;
  kubectl) shift; trap - ERR; if [ $# = 0 ]; then echo "$K8S_BIN/kubectl"; else kc "$@"; fi ;;
  __call) shift; "$@" ;;   # debugging: run one internal function
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
