#!/usr/bin/env bash
# Builds the components and runs the native unit tests of the shared order logic (go test).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/build.sh" --test
