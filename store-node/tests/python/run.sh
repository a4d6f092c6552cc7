#!/usr/bin/env bash
# Runs the redis-py (>= 8, RESP3 by default) tests against a store-node binary, and the TLS
# tests (redis-py with ssl, redis-cli --tls from Debian's redis-tools, which must be installed).
# Creates a venv under ${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}/venv, installs redis>=8
# and pytest from PyPI, builds store-node (release) into $CARGO_TARGET_DIR and the certificate
# generator (examples/test_certs.rs) and runs pytest.
# Exits non-zero when anything fails. STORE_NODE_BIN overrides the binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cache="${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
venv="$cache/venv"

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade 'redis>=8' pytest

if [[ -z "${STORE_NODE_BIN:-}" ]]; then
  (cd "$root" && cargo build --release -p store-node --bin store-node)
  export STORE_NODE_BIN="$CARGO_TARGET_DIR/release/store-node"
fi
(cd "$root" && cargo build -q -p store-node --example test_certs)
export TEST_CERTS_BIN="$CARGO_TARGET_DIR/debug/examples/test_certs"
exec "$venv/bin/python" -m pytest -q "$here" "$@"
