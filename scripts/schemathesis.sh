#!/usr/bin/env bash
# The API contract test: schemathesis (pinned, from PyPI, in target/schemathesis-venv)
# against the real server, started with an enterprise key and the admin token, with every
# check, every phase (examples, coverage, fuzzing, stateful), a fixed seed and a bounded run.
# Zero failures are required. Called by scripts/test.sh; BIN names the server binary
# (default target/debug/tellscan, built by `cargo test`).
#
# The server runs in a fresh network namespace with loopback only (when the kernel lets an
# unprivileged user make one), so generated URLs and callback URLs cannot reach any address
# outside 127.0.0.0/8; without one, the two operations that make outbound requests are left
# out rather than risk it.
set -euo pipefail
cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
VENV=target/schemathesis-venv
BIN=${BIN:-target/debug/tellscan}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-100}
SEED=${SCHEMATHESIS_SEED:-20261207}

if [ "${1:-}" != "--inside" ]; then
  if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  [ -x "$BIN" ] || cargo build --locked --bin tellscan
  if unshare -rn true 2>/dev/null; then
    exec unshare -rn "$0" --inside loopback-only
  fi
  echo "schemathesis: no network namespace; leaving out the URL and callback operations" >&2
  exec "$0" --inside shared-network
fi

EXCLUDE=()
if [ "${2:-}" = loopback-only ]; then
  ip link set lo up
else
  EXCLUDE=(--exclude-operation-id submit_analysis_url --exclude-operation-id submit_analyses)
fi
WORK=$(mktemp -d)
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN_TOKEN=schemathesis-admin-token
export TELLSCAN_ADMIN_TOKEN=$ADMIN_TOKEN
KEY=$("$BIN" keys --data-dir "$WORK/data" create --tier enterprise --name schemathesis | tail -1)
"$BIN" serve --data-dir "$WORK/data" --addr "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SERVER=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.2
done

# the key goes in x-api-key, the admin token as a bearer token (both security schemes). The
# keyed operations run first: the admin run's stateful phase may revoke that very key.
status=0
for tags in "--exclude-tag Admin" "--include-tag Admin"; do
  # shellcheck disable=SC2086
  "$VENV/bin/st" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/api/openapi.json" \
    --header "x-api-key: $KEY" --header "Authorization: Bearer $ADMIN_TOKEN" \
    --checks all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 \
    --request-timeout 60 --generation-database none --no-color --output-truncate false $tags \
    "${EXCLUDE[@]}" || status=$?
done
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)" >&2
  tail -50 "$WORK/server.log" >&2
fi
exit "$status"
