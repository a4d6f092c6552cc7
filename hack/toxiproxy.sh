#!/usr/bin/env bash
# Installs toxiproxy's server, the fault proxy of store-node's multi-process fault tests
# (store-node/tests/fault_network.rs), from the Go module proxy into
# $SESSIONSTORE_CACHE/toxiproxy/<version>/, once per version, and prints its path.
#   TOXIPROXY_VERSION  the version to install (default below; the Go module proxy serves it)
# Needs the go command (this machine kind has it; on Debian: apt-get install golang-go).
set -euo pipefail
VERSION=${TOXIPROXY_VERSION:-v2.5.0}
CACHE=${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}
DIR="$CACHE/toxiproxy/$VERSION"
BIN="$DIR/toxiproxy-server"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "toxiproxy.sh: the go command is needed to install toxiproxy $VERSION (Debian: apt-get install golang-go)" >&2
  exit 1
fi
mkdir -p "$DIR"
TMP=$(mktemp -d "$DIR/.install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "toxiproxy.sh: installing toxiproxy $VERSION into $DIR (go install, once per version)" >&2
# Module and build caches under the project cache, writable so that deleting it works.
GOBIN="$TMP/bin" GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go/build" \
  GOFLAGS=-modcacherw GOTOOLCHAIN=local \
  go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" >&2
# Atomic: a concurrent run sees either no binary or the whole one.
mv "$TMP/bin/server" "$BIN"
echo "$BIN"
