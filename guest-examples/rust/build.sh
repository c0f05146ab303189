#!/usr/bin/env bash
# Builds the Rust example handlers into WebAssembly components:
#   target/wasm32-wasip2/release/{orders,fixture}.wasm
# Installs the wasm32-wasip2 target when missing (rustup first, then the offline fallback).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "installing the wasm32-wasip2 target" >&2
  if ! rustup target add wasm32-wasip2; then
    fallback="$here/../../../shared/toolchains/install-wasm32-wasip2.sh"

    bash "$fallback"
  fi
fi
cd "$here"
cargo build --release --target wasm32-wasip2 --locked "$@"
