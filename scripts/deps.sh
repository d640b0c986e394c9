#!/usr/bin/env bash
# Installs the system packages tellscan builds against, only when they are missing.
# Debian/Ubuntu: libheif-dev (HEIC/HEIF and AVIF decoding) and pkg-config (to find it); with
# --test also redis-server (the tests start their own on a free loopback port), python3-venv
# and iproute2 (scripts/schemathesis.sh), and Debian's chromium and chromium-driver (the
# Studio's browser tests drive a headless Chromium).
set -euo pipefail
missing=()
if [ "${1:-}" = "--test" ]; then
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  # the API contract test: a Python virtual environment for schemathesis, and `ip` to bring
  # up loopback in the network namespace the server runs in
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
fi
pkg-config --exists libheif 2>/dev/null || missing+=(libheif-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
