#!/usr/bin/env bash
# Regenerates the committed Go bindings from wit/ackbar.wit (run it after scripts/sync-wit.sh):
#   internal/wit/imports/, internal/wit/exports/wit_exports/
#       the `packed-batch-handler` world's bindings, by wit-bindgen 0.63's Go generator (./componentize)
#   internal/gopkg/wit/
#       the go.bytecodealliance.org/pkg runtime those bindings use, copied from the
#       wit-bindgen-go crate that generates them (so the two always match), with its import paths
#       moved under this module: the Go module proxy does not serve that module, and a replace
#       directive in this go.mod would not apply to the modules that depend on the SDK.
# Every generated file is constrained to wasip1: natively the SDK records calls for ackbartest.
# internal/wit/exports/export_wit_world/ (where the glue delivers `handle`) is written by hand.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module=github.com/ackbar-io/ackbar/sdk/go
tool="$(bash "$sdk/build-component.sh" --componentizer)"
go="$(bash "$sdk/build-component.sh" --go)"

pkg_version="$("$tool" go-pkg-version)" # "go.bytecodealliance.org/pkg v0.4.0"
crate="$(cargo metadata --format-version 1 --locked --manifest-path "$sdk/componentize/Cargo.toml" |
  grep -o '"manifest_path":"[^"]*/wit-bindgen-go-[^"/]*/Cargo.toml"' | cut -d'"' -f4)"
crate="$(dirname "$crate")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$tool" bindings "$sdk/wit" packed-batch-handler "$module/internal/wit" "$tmp/wit"
mkdir -p "$tmp/gopkg"
cp -R "$crate/src/pkg/wit" "$crate/src/pkg/LICENSE" "$tmp/gopkg/"
cat >"$tmp/gopkg/README.md" <<EOF
# gopkg

A copy of the \`wit\` packages of \`$pkg_version\` (Apache-2.0, see LICENSE), taken from
\`$(basename "$crate")\`, the generator of ../wit, with their import paths under
\`$module/internal/gopkg\`. Written by ../../generate.sh; do not edit.
EOF

find "$tmp/wit" "$tmp/gopkg" -type f \( -name '*.go' -o -name '*.s' \) | while IFS= read -r f; do
  if grep -q '^//go:build' "$f"; then
    echo "generate.sh: $f has a build constraint already" >&2
    exit 1
  fi
  {
    printf '//go:build wasip1\n\n'
    sed 's#"go\.bytecodealliance\.org/pkg/#"'"$module"'/internal/gopkg/#' "$f"
  } >"$f.new"
  mv "$f.new" "$f"
done
"${go%/go}/gofmt" -w "$tmp/wit" "$tmp/gopkg"

rm -rf "$sdk/internal/wit/imports" "$sdk/internal/wit/exports/wit_exports" "$sdk/internal/gopkg"
mkdir -p "$sdk/internal/wit/exports"
mv "$tmp/wit/imports" "$sdk/internal/wit/imports"
mv "$tmp/wit/exports/wit_exports" "$sdk/internal/wit/exports/wit_exports"
mv "$tmp/gopkg" "$sdk/internal/gopkg"
left="$(cd "$tmp/wit" && find . -type f ! -path './imports/*' ! -path './exports/wit_exports/*')"
if [ -n "$left" ]; then
  echo "generate.sh: the generator also wrote (not kept): $left" >&2
fi
echo "generate.sh: bindings and $pkg_version regenerated from $sdk/wit" >&2
