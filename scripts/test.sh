#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs and starts what the tests need
# (HAProxy and the Docker engine from Debian's packages, a one-node Swarm, the local images),
# then the checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test: unit, real HAProxy, real engine"
cargo test --workspace --all-targets --exclude swarm-lb-e2e
echo "== cargo test: end-to-end scenarios on the Swarm (two stacks at a time)"
cargo test -p swarm-lb-e2e --all-targets -- --test-threads 2
