#!/usr/bin/env bash
# Installs the system packages tellscan builds against, only when they are missing.
# Debian/Ubuntu: libheif-dev (HEIC/HEIF and AVIF decoding) and pkg-config (to find it); with
# --test also redis-server (the tests start their own on a free loopback port).
set -euo pipefail
missing=()
if [ "${1:-}" = "--test" ]; then
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
fi
pkg-config --exists libheif 2>/dev/null || missing+=(libheif-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
