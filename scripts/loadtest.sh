#!/usr/bin/env bash
# Load test of a release build on loopback: closed-loop throughput and latency with wrk,
# then open-loop overload at twice the measured throughput (share of 503s, latency of the
# admitted requests), and the server's peak RSS.
#
#   scripts/loadtest.sh [embedded|redis]      (env: IMG, SECONDS_PER_RUN, CONNS, QUEUE, CACHE)
#
# IMG defaults to a 1136x775 camera JPEG from ../shared/corpus. CACHE=1 keeps the result
# cache on (every request after the first is then answered from it: this measures the HTTP,
# auth and quota path alone).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-embedded}
IMG=$(realpath "${IMG:-../shared/corpus/real/exif-samples/jpg/tests/11-tests.jpg}")
SECS=${SECONDS_PER_RUN:-20}
CONNS=${CONNS:-4}
QUEUE=${QUEUE:-8}
CACHE=${CACHE:-0}
scripts/deps.sh --test
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked --quiet
cargo bench --bench load --no-run --quiet 2>/dev/null || cargo bench --bench load --no-run

write_config() {
  cat > "$WORK/load.toml" <<TOML
[server]
queue = $QUEUE
result_cache_entries = $([ "$CACHE" = 1 ] && echo 1024 || echo 0)
[quota.tiers.load]
per_minute = 100000000
daily = 100000000
monthly = 100000000
TOML
}
# shellcheck source=scripts/loadtest_server.sh
source scripts/loadtest_server.sh
URL="http://127.0.0.1:$PORT/api/detect"
echo "== $MODE store, image $(basename "$IMG") ($(stat -c %s "$IMG") bytes), queue $QUEUE, cache $CACHE"

cat > "$WORK/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("IMG"), "rb"))
local data = f:read("*all")
f:close()
local boundary = "----tellscanload"
wrk.method = "POST"
wrk.headers["x-api-key"] = os.getenv("KEY")
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"load.jpg\"\r\n"
  .. "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
done = function(summary, latency, requests)
  io.write(string.format("wrk: %d requests, non-2xx %d, %.1f req/s, p50 %.1f ms, p99 %.1f ms\n",
    summary.requests, summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
echo "-- closed loop: wrk, $CONNS connections, ${SECS}s"
OUT=$(IMG="$IMG" KEY="$KEY" wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/post.lua" "$URL")
echo "$OUT" | tail -1
RPS=$(echo "$OUT" | tail -1 | sed -E 's/.* ([0-9.]+) req\/s.*/\1/')
echo "-- auth + quota per request (server histogram tellscan_auth_quota_seconds)"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^tellscan_auth_quota_seconds_(count|sum|bucket)' | head -12 || true
RATE=$(python3 -c "print(max(1.0, 2 * $RPS))")
echo "-- open loop at twice the measured throughput: $RATE req/s for ${SECS}s"
cargo bench --bench load --quiet -- "$URL" "$KEY" "$IMG" "$RATE" "$SECS" 2>/dev/null
echo "-- server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print $2, $3}')"
