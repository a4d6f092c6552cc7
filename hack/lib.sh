# Shared helpers for the hack/ scripts. Source it; it sets strict mode and the cache paths.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SESSIONSTORE_CACHE="${SESSIONSTORE_CACHE:-$HOME/.cache/sessionstore}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SESSIONSTORE_CACHE/target}"
mkdir -p "$SESSIONSTORE_CACHE"

# step NAME: prints a banner with the elapsed time so long runs show progress.
SECONDS_START=${SECONDS_START:-$(date +%s)}
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - SECONDS_START ))" "$*"; }

# apt_install PKG...: installs missing Debian packages (apt-get update once per run).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; export APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
