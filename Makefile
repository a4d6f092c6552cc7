# The two commands of the README, and the pieces they are made of.
SHELL := /bin/bash
export SESSIONSTORE_CACHE ?= $(HOME)/.cache/sessionstore
export CARGO_TARGET_DIR ?= $(SESSIONSTORE_CACHE)/target

.PHONY: demo test unit lint
## demo: bring up a local Kubernetes if none is reachable, install everything, show a session
demo:
	hack/demo.sh

## test: every test: lint, unit, store multi-process, chart, e2e on a real cluster
test:
	hack/test.sh

unit:
	cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
