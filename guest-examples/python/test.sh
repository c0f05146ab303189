#!/usr/bin/env bash
# Native unit tests of the order logic and both handlers (host imports mocked); no Wasm involved.
# Generates the bindings first (target/bindings), installing componentize-py if needed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/build.sh" --bindings-only
cd "$here"
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$here/src:$here/target/bindings" \
    python3 -m unittest discover -s tests "$@"
