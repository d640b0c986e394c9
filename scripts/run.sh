#!/usr/bin/env bash
# Builds tellscan in release mode (installing what it needs) and runs it with the given
# arguments, e.g. `scripts/run.sh detect photo.jpg` or `scripts/run.sh eval ../shared/corpus/labels.csv`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked --quiet
exec target/release/tellscan "$@"
