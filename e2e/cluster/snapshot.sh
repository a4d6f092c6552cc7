#!/usr/bin/env bash
# Prints the machine state the local cluster touches, for comparing before `up` and after
# `down`:  snapshot.sh > before; cluster.sh up; ...; cluster.sh down; snapshot.sh | diff before -
# (volatile counters and the pids of unrelated processes are left out).
set -uo pipefail
echo "## sysctl"
sysctl -a 2>/dev/null | grep -E '^(kernel\.(panic|keys\.root_max)|vm\.(overcommit|panic_on_oom)|net\.ipv4\.(ip_forward|conf\.(all|default)\.)|net\.ipv6\.conf\.(all|default)\.forwarding|net\.bridge\.|net\.netfilter\.nf_conntrack_(max|tcp_timeout_(established|close_wait)|udp_timeout|tcp_be_liberal))' \
  | grep -vE 'nf_conntrack_count|\.stable_secret'
echo "## links"; ip -o link show | awk '{print $2, $3}'
echo "## addresses"; ip -o addr show | awk '{print $2, $3, $4}'
echo "## routes"; ip route show table all | grep -v '^local\|^broadcast\|^multicast\|ff00::'
echo "## iptables"; iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
echo "## ip6tables"; ip6tables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
echo "## nft tables"; nft list tables 2>/dev/null
echo "## nfacct"; nfacct list 2>/dev/null | sed 's/.* = //'
echo "## mounts"; awk '{print $5, $9}' /proc/self/mountinfo | grep -vE '^/(proc|sys|dev)( |/)' | sort
echo "## netns"; ls -A /run/netns 2>/dev/null
echo "## cgroups (kubepods/sessionstore)"; find /sys/fs/cgroup -maxdepth 6 -type d \( -name 'kubepods*' -o -name 'sessionstore*' \) 2>/dev/null | sort
echo "## cgroup2 process_api"; find /sys/fs/cgroup/unified -maxdepth 2 -type d -path '*process_api*' 2>/dev/null | sort
echo "## paths"
for d in /var/log/containers /var/log/pods /var/lib/cni /run/containerd /run/netns /var/lib/kubelet \
  /usr/libexec/kubernetes /etc/cni/net.d /opt/cni /var/lib/containerd /opt/containerd /etc/kubernetes \
  /run/sessionstore-cluster /root/.kube; do
  [ -e "$d" ] && echo "$d: $(find "$d" 2>/dev/null | wc -l) entries"
done
echo "## processes"
for p in /proc/[0-9]*; do readlink "$p/exe" 2>/dev/null; done | grep -E 'containerd|runc|etcd|kube|coredns|nettest|/pause$|/cluster-tools/' | sort | uniq -c
