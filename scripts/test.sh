#!/usr/bin/env bash
# The whole test suite: installs what it needs, runs every test of the crate, then the API
# contract test (schemathesis against the real server, scripts/schemathesis.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
status=0
cargo test --locked --all-features --no-fail-fast "$@" || status=$?
BIN=target/debug/tellscan scripts/schemathesis.sh || status=$?
exit "$status"
