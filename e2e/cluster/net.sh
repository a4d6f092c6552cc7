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
  local ipt table chain rule keep target
  keep="$RECORD_DIR/kube-chains-before"
  for ipt in iptables ip6tables; do
    for table in filter nat mangle raw; do
      $ipt -w -t "$table" -S >/dev/null 2>&1 || continue
      # rules in any chain that jump to a KUBE-* chain
      { $ipt -w -t "$table" -S | grep -E -- '^-A .* -j KUBE-' || true; } | while read -r rule; do
        chain=$(awk '{print $2}' <<<"$rule")
        case $chain in KUBE-*) continue ;; esac   # those go with their chain
        target=$(grep -oE -- '-j KUBE-[^ ]+' <<<"$rule" | cut -c4-)
        grep -qx "$ipt $table $target" "$keep" 2>/dev/null && continue
        # shellcheck disable=SC2086
        eval "$ipt -w -t $table -D ${rule#-A }" 2>/dev/null || true
      done
      for chain in $($ipt -w -t "$table" -S | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do
        grep -qx "$ipt $table $chain" "$keep" 2>/dev/null && continue
        $ipt -w -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $($ipt -w -t "$table" -S | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do
        grep -qx "$ipt $table $chain" "$keep" 2>/dev/null && continue
        $ipt -w -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
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
  guard_down
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link set "$BRIDGE" down 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
  # veths of pods whose CNI DEL never ran (crash) are attached to the bridge and die with it or
  # with their netns; remove any still attached-less veth named by the bridge plugin.
}
