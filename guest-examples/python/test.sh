#!/usr/bin/env bash
# Native unit tests, no Wasm: the ackbar-guest SDK's own (sdk/python/tests), then the order logic
# and the three handlers, run by the SDK's harness. When build.sh has installed componentize-py,
# the SDK's tests also check its boundary against the bindings componentize-py generates.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sdk="$(cd "$here/../../sdk/python" && pwd)"
version="$(sed -n 's/^componentize-py==\([^ ]*\).*/\1/p' "$here/requirements.txt")"
cpy="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/toolchains/componentize-py-$version/bin/componentize-py"
if [ -z "${COMPONENTIZE_PY:-}" ] && [ -x "$cpy" ]; then
    export COMPONENTIZE_PY="$cpy"
fi
export PYTHONDONTWRITEBYTECODE=1
(cd "$sdk" && PYTHONPATH="$sdk/src" python3 -m unittest discover -s tests "$@")
cd "$here"
PYTHONPATH="$here/src:$sdk/src" python3 -m unittest discover -s tests "$@"
