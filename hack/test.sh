#!/usr/bin/env bash
# The README's test command: every test the project has, in order of cost.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "toolchain: rustfmt and clippy"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "Helm chart: lint and render tests"
hack/chart-test.sh

step "all tests passed"
