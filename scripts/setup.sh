#!/usr/bin/env bash
# Installs what building Ackbar needs and is missing: the wasm32-wasip2 Rust target and a C
# toolchain (librdkafka is compiled from source by the rdkafka crate).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust 1.95 or newer with rustup (https://rustup.rs)" >&2
  exit 1
fi

missing=()
for tool in cc make; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing build-essential (missing: ${missing[*]})" >&2
    apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
  else
    echo "setup: missing ${missing[*]}: install a C compiler and make" >&2
    exit 1
  fi
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: installing the wasm32-wasip2 target" >&2
  if ! rustup target add wasm32-wasip2; then
    fallback="$repo/../shared/toolchains/install-wasm32-wasip2.sh"
    if [ -f "$fallback" ]; then
      bash "$fallback"
    else
      echo "setup: 'rustup target add wasm32-wasip2' failed and no offline copy was found" >&2
      exit 1
    fi
  fi
fi
