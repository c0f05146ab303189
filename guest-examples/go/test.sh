#!/usr/bin/env bash
# Builds the components and runs the native unit tests (go test): the handlers with the SDK's
# harness, the shared order logic, and the SDK itself.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/build.sh" --test
