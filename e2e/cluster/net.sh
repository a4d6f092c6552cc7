# Network of the local cluster: one bridge whose address is the node IP, FORWARD guard rules that
# keep pod traffic on the machine, and cleanup of the iptables chains the kubelet/kube-proxy make.
# Sourced by cluster.sh.

GUARD_CHAIN=SESSIONSTORE-GUARD

net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Services are only on this machine: route their CIDR to the bridge, never to a default route.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  guard_up
}

# Nothing that enters from the bridge may leave through another interface, and nothing from
# another interface may be forwarded onto the bridge. Bridge-to-bridge traffic (pod to pod,
# pod to ClusterIP to pod) continues to the kubelet/kube-proxy rules. The guard lives in the
# mangle table's FORWARD chain, which is traversed before filter FORWARD and which kube-proxy
# does not touch (it prepends its own jumps to filter FORWARD, ahead of anything we put there).
guard_up() {
  local ipt
  for ipt in iptables ip6tables; do
    $ipt -w -t mangle -N "$GUARD_CHAIN" 2>/dev/null || $ipt -w -t mangle -F "$GUARD_CHAIN"
    $ipt -w -t mangle -A "$GUARD_CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j RETURN
    $ipt -w -t mangle -A "$GUARD_CHAIN" -i "$BRIDGE" -j DROP
    $ipt -w -t mangle -A "$GUARD_CHAIN" -o "$BRIDGE" -j DROP
    $ipt -w -t mangle -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null || $ipt -w -t mangle -I FORWARD 1 -j "$GUARD_CHAIN"
  done
}

guard_present() {
  iptables -w -t mangle -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null &&
    iptables -w -t mangle -S "$GUARD_CHAIN" 2>/dev/null | grep -q -- "-i $BRIDGE -j DROP"
}

guard_down() {
  local ipt table
  for ipt in iptables ip6tables; do
    for table in mangle filter; do   # filter: where earlier versions put it
      while $ipt -w -t $table -D FORWARD -j "$GUARD_CHAIN" 2>/dev/null; do :; done
      $ipt -w -t $table -F "$GUARD_CHAIN" 2>/dev/null || true
      $ipt -w -t $table -X "$GUARD_CHAIN" 2>/dev/null || true
    done
  done
}

# Removes every KUBE-* chain (and the rules jumping to them) in every table, for iptables and
# ip6tables. `kube-proxy --cleanup` leaves the kubelet's chains (KUBE-FIREWALL, KUBE-MARK-*,
# canaries) behind, so this is done by hand. Chains that existed before the first `up` are kept.
kube_chains_down() {
  local ipt keep="$RECORD_DIR/kube-chains-before" script
  for ipt in iptables ip6tables; do
    # one iptables-restore --noflush per family: delete the jumps to KUBE-* chains from the
    # other chains, then flush and delete the KUBE-* chains themselves (fast and atomic).
    script=$($ipt-save 2>/dev/null | awk -v ipt="$ipt" -v keepf="$keep" '
      BEGIN { while ((getline l < keepf) > 0) keep[l] = 1 }
      /^\*/ { table = substr($0, 2); next }
      /^:KUBE-/ { c = substr($1, 2); if (!((ipt " " table " " c) in keep)) chains[table] = chains[table] " " c; next }
      /^-A / && / -j KUBE-/ {
        if ($2 ~ /^KUBE-/) next
        t = $0; sub(/.* -j /, "", t); sub(/ .*/, "", t)
        if ((ipt " " table " " t) in keep) next
        dels[table] = dels[table] "-D " substr($0, 4) "\n"
      }
      END {
        for (t in chains) seen[t] = 1
        for (t in dels) seen[t] = 1
        for (t in seen) {
          printf "*%s\n%s", t, dels[t]
          n = split(chains[t], cs, " ")
          for (i = 1; i <= n; i++) printf "-F %s\n", cs[i]
          for (i = 1; i <= n; i++) printf "-X %s\n", cs[i]
          print "COMMIT"
        }
      }')
    [ -n "$script" ] || continue
    printf '%s\n' "$script" | $ipt-restore -w --noflush 2>/dev/null \
      || info "WARNING: $ipt-restore could not remove every KUBE-* chain"
  done
}

list_kube_chains() {
  local ipt table
  for ipt in iptables ip6tables; do
    for table in filter nat mangle raw; do
      $ipt -w -t "$table" -S 2>/dev/null | awk -v p="$ipt $table" '$1=="-N" && $2 ~ /^KUBE-/ {print p, $2}'
    done
  done
}

net_down() {
  kube_chains_down
  # forget the connections of our addresses (the conntrack table is the kernel's, not ours)
  local f
  for f in "-s $POD_CIDR" "-d $POD_CIDR" "-d $SERVICE_CIDR"; do
    # shellcheck disable=SC2086
    conntrack -D $f >/dev/null 2>&1 || true
  done
  guard_down
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link set "$BRIDGE" down 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
  # veths of pods whose CNI DEL never ran (crash) are attached to the bridge and die with it or
  # with their netns; remove any still attached-less veth named by the bridge plugin.
}
