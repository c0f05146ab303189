#!/usr/bin/env bash
# Builds the Rust handlers into WebAssembly components:
#   guest-examples/rust/target/{orders,manual,enrich}.wasm     (the examples, as in every language)
#   guest-examples/rust/target/wasm32-wasip2/release/{orders,manual,enrich,fixture}.wasm
# Extra arguments go to cargo (e.g. --quiet).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/../../scripts/setup.sh"
cd "$here"
# Its own target dir: a CARGO_TARGET_DIR set for the host must not move the components.
cargo build --release --target wasm32-wasip2 --locked --target-dir "$here/target" "$@"
for name in orders manual enrich; do
    cp -p -u "target/wasm32-wasip2/release/$name.wasm" "target/$name.wasm"
done
