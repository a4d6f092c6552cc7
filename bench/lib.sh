# Shared helpers of the bench/ scripts. Source it after hack/lib.sh: it installs the Debian
# packages given in BENCH_PACKAGES, makes a work directory removed at exit (with every PID in
# `pids` killed), builds store-node (release) and copies it there as NODE_BIN (unless NODE_BIN
# names a binary already), and defines free_port and median. The copy keeps the measured
# binary fixed for the whole run even if another build replaces the one in the target
# directory meanwhile.
apt_install ${BENCH_PACKAGES:-redis-tools}

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "${NODE_BIN:-}" ]; then
  step "building store-node (release)"
  cargo build --release -q -p store-node
  cp "$CARGO_TARGET_DIR/release/store-node" "$work/store-node"
  NODE_BIN="$work/store-node"
fi

# free_port: a port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ a[NR]=$1 } END { print a[int((NR+1)/2)] }'; }
