#!/usr/bin/env bash
# Runs the ioredis tests (ioredis.test.js, node's own test runner) against a store-node binary
# (STORE_NODE_BIN). ioredis comes from npm once: its node_modules are kept under
# ${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}/node/<hash of package-lock.json>, so a
# changed lock file installs afresh and an unchanged one installs nothing. Needs Node >= 20.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${STORE_NODE_BIN:?STORE_NODE_BIN must name a store-node binary}"
cache="${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}/node"
modules="$cache/$(sha256sum "$here/package-lock.json" | cut -c1-16)"

if [[ ! -d "$modules/node_modules" ]]; then
  mkdir -p "$cache"
  staging="$(mktemp -d "$cache/.install.XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  cp "$here/package.json" "$here/package-lock.json" "$staging/"
  (cd "$staging" && npm ci --no-audit --no-fund --loglevel=error)
  rm -rf "$modules"
  mv "$staging" "$modules"
fi
NODE_PATH="$modules/node_modules" exec node --test "$here/ioredis.test.js"
