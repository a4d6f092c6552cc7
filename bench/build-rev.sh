#!/usr/bin/env bash
# Builds store-node (release) at a git revision, once, and prints the binary's path: the
# reference build for REFERENCE=... in bench/store-node-vs-redis.sh and bench/disc-mode.sh,
# which run it alternating with the current build.
#   bench/build-rev.sh REV     e.g. bench/build-rev.sh main~3
# The binary is cached by commit under $SESSIONSTORE_CACHE/bench-builds/<commit>/, built in a
# target directory of its own so the current build's outputs are left alone.
source "$(dirname "$0")/../hack/lib.sh"
cd "$ROOT"
rev=${1:?usage: bench/build-rev.sh REV}
commit=$(git rev-parse --verify "$rev^{commit}")
out="$SESSIONSTORE_CACHE/bench-builds/$commit"
if [ ! -x "$out/store-node" ]; then
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git archive "$commit" | tar -x -C "$src"
  step "building store-node at ${commit:0:10} (release, once)" >&2
  CARGO_TARGET_DIR="$SESSIONSTORE_CACHE/bench-builds/target" cargo build --release -q -p store-node --manifest-path "$src/Cargo.toml" >&2
  mkdir -p "$out"
  cp "$SESSIONSTORE_CACHE/bench-builds/target/release/store-node" "$out/store-node"
fi
echo "$out/store-node"
