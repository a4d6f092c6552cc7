#!/usr/bin/env bash
# The README's test command: every test the project has, cheapest first.
#   KEEP_CLUSTER=1  leave a local cluster this run brought up running at the end
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "toolchain: rustfmt and clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "module structure: no import cycles, no upward imports, no overlong files (hack/check-deps.py)"
python3 hack/check-deps.py --self-test
python3 hack/check-deps.py

step "sessionstore-api without its k8s feature (what store-node builds against)"
cargo check -q -p sessionstore-api --no-default-features
cargo test -q -p sessionstore-api --no-default-features

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "toxiproxy for store-node's fault suite (hack/toxiproxy.sh: Go module proxy, cached per version)"
TOXIPROXY_SERVER=$(hack/toxiproxy.sh)
export TOXIPROXY_SERVER

step "Debian's redis-server: the reference of store-node's differential test"
apt_install redis-server
# The differential test (store-node/tests/redis_differential.rs) fails instead of skipping.
export SESSIONSTORE_REQUIRE_REDIS=1

step "cargo test --workspace (unit, store-node over TCP and multi-process with the fault suite, reconcile scenarios)"
cargo test --workspace

step "redis-py 8 (RESP3) and redis-cli --tls against store-node"
apt_install redis-tools
# The debug binary cargo test just built: no second release build of store-node here.
# --workspace, not -p store-node: the same dependency features as cargo test --workspace, so
# nothing is compiled again.
cargo build -q --workspace --bin store-node
STORE_NODE_BIN="$CARGO_TARGET_DIR/debug/store-node" store-node/tests/python/run.sh

step "ioredis 6 (Node, RESP3): pub/sub and scripts against store-node"
# ioredis comes from npm; its node_modules are cached under $SESSIONSTORE_CACHE/node by the
# hash of the lock file.
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null \
  || ! command -v npm >/dev/null; then
  echo "Node.js >= 20 with npm is needed for the ioredis tests" >&2
  exit 1
fi
STORE_NODE_BIN="$CARGO_TARGET_DIR/debug/store-node" store-node/tests/node/run.sh

step "PHP sessions with phpredis locking: two concurrent requests for one session"
apt_install php-cli php-redis
STORE_NODE_BIN="$CARGO_TARGET_DIR/debug/store-node" store-node/tests/php/run.sh

step "Spring Session Data Redis (indexed repository, Lettuce): find by principal, expired and deleted events"
# The JDK and Maven from Debian; the libraries from Maven Central, kept under
# $SESSIONSTORE_CACHE/maven by store-node/tests/spring/run.sh.
apt_install default-jdk-headless maven
STORE_NODE_BIN="$CARGO_TARGET_DIR/debug/store-node" store-node/tests/spring/run.sh

step "Helm chart: lint and render tests"
hack/chart-test.sh

# A real cluster: the user's when KUBECONFIG answers, else the local one (brought up here and
# taken down again at the end, so the machine is left as it was found).
was_up=0
if [ -x e2e/cluster/cluster.sh ] && e2e/cluster/cluster.sh status >/dev/null 2>&1; then was_up=1; fi
source hack/cluster-env.sh
if [ "$LOCAL_CLUSTER" = 1 ] && [ "$was_up" = 0 ] && [ -z "${KEEP_CLUSTER:-}" ]; then
  trap 'step "taking the local cluster down"; e2e/cluster/cluster.sh down' EXIT
fi
if [ "$LOCAL_CLUSTER" = 1 ]; then
  step "local cluster smoke test (pods, DNS, Services, volumes, memory limits)"
  e2e/cluster/smoke.sh
fi

step "end-to-end suite on the cluster (e2e/run.sh)"
e2e/run.sh

step "all tests passed"
