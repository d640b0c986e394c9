#!/usr/bin/env bash
# Installs the system packages tellscan builds against, only when they are missing.
# Debian/Ubuntu: libheif-dev (HEIC/HEIF decoding) and pkg-config (to find it).
set -euo pipefail
missing=()
pkg-config --exists libheif 2>/dev/null || missing+=(libheif-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
