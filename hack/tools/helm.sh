#!/usr/bin/env bash
# Prints the path of a pinned `helm` binary, building it first from its Go module (through the
# Go module proxy) when this machine has not built that version yet. The binary is cached under
# ${SESSIONSTORE_CACHE}/helm/<version>/helm, so only a cold machine pays for the build (~2-4 min
# on 2 cores). Progress goes to stderr; stdout is only the path, so callers can write
#   HELM="$(hack/tools/helm.sh)"
set -euo pipefail

# The newest patch of the last settled 3.x minor (3.22.0 was a fresh .0 when this was pinned). Its
# go.mod has no replace directives, so `go install module@version` builds it as released; it builds
# with the machine's Go 1.26. Bump it here, and the cache keeps each version apart.
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
SESSIONSTORE_CACHE="${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}"
dir="$SESSIONSTORE_CACHE/helm/$HELM_VERSION"
bin="$dir/helm"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "helm.sh: go is required to build helm $HELM_VERSION" >&2; exit 1; }
mkdir -p "$dir"
# Two scripts asking for helm at once (chart test and e2e) must not build it twice.
exec 9>"$dir/.lock"
flock 9
if [ ! -x "$bin" ]; then
  echo "helm.sh: building helm $HELM_VERSION from helm.sh/helm/v3 (cold cache, a few minutes)" >&2
  tmp="$(mktemp -d "$dir/build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # The version ldflags are what helm's own Makefile sets, so `helm version` tells the truth.
  GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  mv "$tmp/helm" "$bin.new"
  mv "$bin.new" "$bin"
fi
echo "$bin"
