# Shared helpers of the bench/ scripts. Source it after hack/lib.sh: it installs the Debian
# packages given in BENCH_PACKAGES, builds store-node (release) into NODE_BIN, makes a work
# directory removed at exit (with every PID in `pids` killed), and defines free_port and median.
apt_install ${BENCH_PACKAGES:-redis-tools}
step "building store-node (release)"
cargo build --release -q -p store-node
NODE_BIN="$CARGO_TARGET_DIR/release/store-node"

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# free_port: a port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ a[NR]=$1 } END { print a[int((NR+1)/2)] }'; }
