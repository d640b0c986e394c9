#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test of the crate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
cargo test --locked --all-features --no-fail-fast "$@"
