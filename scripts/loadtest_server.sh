# Sourced by the load-test scripts: a scratch folder, an optional loopback Redis, a key of
# tier `load` and a release server on a free loopback port, all stopped on exit.
#
# Before sourcing: MODE (embedded|redis) and a function write_config that writes the server's
# settings to "$WORK/load.toml" (it must define [quota.tiers.load]).
# After: WORK, PORT, KEY, SERVER (pid), BIN.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

WORK=$(mktemp -d)
PORT=$(free_port)
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true
  [ -n "${REDIS:-}" ] && kill "$REDIS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
write_config
if [ "$MODE" = redis ]; then
  RPORT=$(free_port)
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
