#!/usr/bin/env bash
# Tests the JavaScript handlers: the business logic and the handlers natively (node --test, the
# @ackbar/guest harness), then every built component in target/ against the same cases of
# guest-examples/README.md, run in Node through `jco transpile`. Builds first (BACKEND=both also
# tests the StarlingMonkey components).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/build.sh" "$@" >/dev/null
# The SDK the handlers are built on: its own unit tests.
(cd "$here/../../sdk/js" && node --test --test-reporter=dot)
node --test --test-reporter=dot "$here/test/order.test.js" "$here/test/handlers.test.js"
mkdir -p "$here/target/test"
tools="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/toolchains/js-$(sha256sum "$here/toolchain/package-lock.json" | cut -c1-12)"
for wasm in "$here"/target/*.wasm; do
  name="$(basename "$wasm" .wasm)"
  # Node 20 needs the flag for the extended-const instructions these components use.
  node --experimental-wasm-extended-const --no-warnings "$here/test/run-component.mjs" \
    "${name%%-*}" "$wasm" "$tools/node_modules" "$here/target/test/$name" 2>"$here/target/test/$name.stderr"
  # The poison cases trapped: the exception's message reached stderr (enrich forwards poison).
  [ "${name%%-*}" = enrich ] || grep -q "cannot price item 'poison'" "$here/target/test/$name.stderr" ||
    { echo "$name: the trap message did not reach stderr" >&2; exit 1; }
done
