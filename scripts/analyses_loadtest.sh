#!/usr/bin/env bash
# End-to-end load test of the asynchronous analyses API on a release build on loopback:
# a steady open-loop phase, then a burst, with a loopback webhook receiver (benches/analyses_load.rs).
#
#   scripts/analyses_loadtest.sh [embedded|redis]      (env: IMG, RATE, SECONDS_PER_RUN, BURST, WORKERS)
#
# IMG defaults to a 1152x864 (1.0 MP) camera JPEG from ../shared/corpus. RATE submissions per
# second for SECONDS_PER_RUN (default 2/s for 20 s), then BURST (default 200) at once; WORKERS is
# [analyses] workers (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-embedded}
IMG=$(realpath "${IMG:-../shared/corpus/real/metadata-extractor/jpg/Sony DCR-PC110E (2).jpg}")
RATE=${RATE:-2}
SECS=${SECONDS_PER_RUN:-20}
BURST=${BURST:-200}
WORKERS=${WORKERS:-2}
scripts/deps.sh --test
cargo build --release --locked --quiet
cargo bench --bench analyses_load --no-run --quiet 2>/dev/null || cargo bench --bench analyses_load --no-run

write_config() {
  cat > "$WORK/load.toml" <<TOML
[server]
result_cache_entries = 0
[quota.tiers.load]
per_minute = 100000000
daily = 100000000
monthly = 100000000
[analyses]
workers = $WORKERS
allowed_networks = ["127.0.0.0/8"]
TOML
}
# shellcheck source=scripts/loadtest_server.sh
source scripts/loadtest_server.sh
DIMS=$(file -b "$IMG" | grep -oE '[0-9]+x[0-9]+' | tail -1)
echo "== $MODE store, image $IMG ($DIMS, $(stat -c %s "$IMG") bytes), analyses workers $WORKERS, $(nproc) cores"
echo "-- steady $RATE/s for ${SECS}s, then burst of $BURST"
START=$(date +%s)
cargo bench --bench analyses_load --quiet -- "http://127.0.0.1:$PORT" "$KEY" "$IMG" "$RATE" "$SECS" "$BURST" 2>/dev/null
echo "-- took $(( $(date +%s) - START )) s; server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print $2, $3}')"
WARNS=$(grep -c -E 'WARN|ERROR' "$WORK/server.log" || true)
echo "-- server log: $WARNS warnings/errors"
[ "$WARNS" -eq 0 ] || grep -E 'WARN|ERROR' "$WORK/server.log" | head -5
