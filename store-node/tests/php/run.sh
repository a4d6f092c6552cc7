#!/usr/bin/env bash
# PHP's redis session handler (phpredis, Debian's php-cli and php-redis) with locking, against a
# store-node started here: two concurrent requests for one session (session_locking.php).
# STORE_NODE_BIN is the binary to run (the debug build `make test` already has). Exits non-zero
# when anything fails; stops the node it started (by its PID) either way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${STORE_NODE_BIN:?STORE_NODE_BIN must name a store-node binary}"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
resp_port=$(free_port)
http_port=$(free_port)
work="$(mktemp -d)"
password="php-$(date +%s%N)"
printf '%s\n' "$password" > "$work/password"

"$STORE_NODE_BIN" --bind 127.0.0.1 --resp-port "$resp_port" --http-port "$http_port" \
  --node-name php-0 --password-file "$work/password" --log-level warn &
node_pid=$!
trap 'kill "$node_pid" 2>/dev/null; wait "$node_pid" 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 1 200); do
  if php -r "exit(@file_get_contents('http://127.0.0.1:$http_port/readyz') === false ? 1 : 0);"; then
    break
  fi
  kill -0 "$node_pid" 2>/dev/null || { echo "store-node exited" >&2; exit 1; }
  sleep 0.1
done
php "$here/session_locking.php" "$resp_port" "$http_port" "$password"
