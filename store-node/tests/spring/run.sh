#!/usr/bin/env bash
# Spring Session Data Redis's indexed repository (SpringSessionCheck.java: Spring Framework,
# Lettuce, no Spring Boot) against a store-node started here: sessions found by principal
# name, the expired and deleted events. STORE_NODE_BIN is the binary to run. The JDK and Maven
# come from Debian (hack/test.sh installs them), the libraries from Maven Central once: the
# Maven repository is kept under ${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}/maven.
# Exits non-zero when anything fails; stops the node it started (by its PID) either way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${STORE_NODE_BIN:?STORE_NODE_BIN must name a store-node binary}"
repo="${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}/maven"
work="$(mktemp -d)"
node_pid=""
cleanup() {
  if [[ -n "$node_pid" ]]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Built outside the source tree so the checkout stays clean.
cp -r "$here/pom.xml" "$here/src" "$work/"
(cd "$work" && mvn -B -q -Dmaven.repo.local="$repo" compile dependency:build-classpath \
  -Dmdep.outputFile="$work/classpath.txt")

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
resp_port=$(free_port)
http_port=$(free_port)
"$STORE_NODE_BIN" --bind 127.0.0.1 --resp-port "$resp_port" --http-port "$http_port" \
  --node-name spring-0 --log-level warn &
node_pid=$!
for _ in $(seq 1 200); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$http_port/readyz', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$node_pid" 2>/dev/null || { echo "store-node exited" >&2; exit 1; }
  sleep 0.1
done
java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$work/target/classes:$(cat "$work/classpath.txt")" \
  sessionstore.SpringSessionCheck "$resp_port"
