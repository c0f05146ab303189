#!/usr/bin/env bash
# Copies the guest contract (wit/) into each SDK package, which ships the WIT it was built
# against. `sync-wit.sh --check` only reports copies that differ (exit 1), as the tests do.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
copies=(
  sdk/rust/wit
  sdk/go/wit
  sdk/js/wit
  sdk/python/src/ackbar_guest/wit
)
check=false
[ "${1:-}" = --check ] && check=true
status=0
for dir in "${copies[@]}"; do
  for wit in "$repo"/wit/*.wit; do
    copy="$repo/$dir/$(basename "$wit")"
    if cmp -s "$wit" "$copy"; then continue; fi
    if $check; then
      echo "sync-wit: $dir/$(basename "$wit") differs from wit/$(basename "$wit")" >&2
      status=1
    else
      mkdir -p "$repo/$dir"
      cp "$wit" "$copy"
      echo "sync-wit: updated $dir/$(basename "$wit")"
    fi
  done
done
exit $status
