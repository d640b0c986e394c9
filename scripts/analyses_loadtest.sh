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

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true
  [ -n "${REDIS:-}" ] && kill "$REDIS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
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
if [ "$MODE" = redis ]; then
  RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
  REDIS=$!
  export TELLSCAN_REDIS_URL="redis://127.0.0.1:$RPORT/"
  sleep 0.5
fi
BIN=target/release/tellscan
KEY=$($BIN keys --config "$WORK/load.toml" --data-dir "$WORK/data" create --tier load --name load | tail -1)
$BIN serve --config "$WORK/load.toml" --data-dir "$WORK/data" --addr "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
DIMS=$(file -b "$IMG" | grep -oE '[0-9]+x[0-9]+' | tail -1)
echo "== $MODE store, image $IMG ($DIMS, $(stat -c %s "$IMG") bytes), analyses workers $WORKERS, $(nproc) cores"
echo "-- steady $RATE/s for ${SECS}s, then burst of $BURST"
START=$(date +%s)
cargo bench --bench analyses_load --quiet -- "http://127.0.0.1:$PORT" "$KEY" "$IMG" "$RATE" "$SECS" "$BURST" 2>/dev/null
echo "-- took $(( $(date +%s) - START )) s; server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print $2, $3}')"
WARNS=$(grep -c -E 'WARN|ERROR' "$WORK/server.log" || true)
echo "-- server log: $WARNS warnings/errors"
[ "$WARNS" -eq 0 ] || grep -E 'WARN|ERROR' "$WORK/server.log" | head -5
