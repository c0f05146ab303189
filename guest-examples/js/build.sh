#!/usr/bin/env bash
# Builds the JavaScript example handlers into WebAssembly components:
#   guest-examples/js/target/orders.wasm, manual.wasm, enrich.wasm           (QuickJS, the default)
#   guest-examples/js/target/{orders,manual,enrich}-starlingmonkey.wasm
#                                              (only with BACKEND=starlingmonkey or BACKEND=both)
#
# Usage: build.sh [--backend quickjs|starlingmonkey|both]     (or BACKEND=... build.sh)
#
# The handlers use the SDK in sdk/js (package.json: "@ackbar/guest": "file:../../sdk/js", linked
# into node_modules by `npm install --offline`) and are built by its `ackbar-guest-build`. The
# pinned build tools (toolchain/package-lock.json) are installed once with `npm ci` into
# ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains/js-<lockfile hash>; after that the build is
# offline. A component is rebuilt only when its sources, the SDK or the toolchain changed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$(cd "$here/../../sdk/js" && pwd)"
backend="${BACKEND:-quickjs}"
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="${2:?--backend needs a value}"; shift 2 ;;
    --backend=*) backend="${1#--backend=}"; shift ;;
    -h|--help) sed -n '2,10p' "$here/build.sh"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$backend" in
  quickjs|qjs) backends=(quickjs) ;;
  starlingmonkey|sm) backends=(starlingmonkey) ;;
  both) backends=(quickjs starlingmonkey) ;;
  *) echo "build.sh: unknown backend '$backend' (quickjs, starlingmonkey or both)" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Node.js 20+ and npm; on a bare Debian machine, Debian's packages (Debian 12 has Node.js 18).
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "js: installing nodejs and npm (apt-get)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "js: node and npm are missing: install Node.js 20 or newer" >&2
    exit 1
  fi
fi
if [ "$(node_major)" -lt 18 ]; then
  echo "js: Node.js $(node --version) is too old: 20 or newer is needed" >&2
  exit 1
elif [ "$(node_major)" -lt 20 ]; then
  echo "js: warning: Node.js $(node --version): the pinned tools are tested with Node.js 20+" >&2
fi

# The toolchain: one directory per lockfile, so changing a pinned version installs a new one.
cache="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/toolchains"
lock_hash="$(sha256sum "$here/toolchain/package-lock.json" | cut -c1-12)"
tools="$cache/js-$lock_hash"
mkdir -p "$cache"
if [ ! -f "$tools/.installed" ]; then
  exec 8>"$cache/.js.lock"
  flock 8
  if [ ! -f "$tools/.installed" ]; then
    echo "js: installing componentize-qjs, componentize-js and esbuild into $tools" >&2
    rm -rf "$tools.tmp"
    mkdir -p "$tools.tmp"
    cp "$here/toolchain/package.json" "$here/toolchain/package-lock.json" "$tools.tmp/"
    if ! npm ci --prefix "$tools.tmp" --no-audit --no-fund --loglevel=error >"$tools.tmp.log" 2>&1; then
      cat "$tools.tmp.log" >&2
      exit 1
    fi
    rm -f "$tools.tmp.log"
    touch "$tools.tmp/.installed"
    rm -rf "$tools"
    mv "$tools.tmp" "$tools"
  fi
  exec 8>&-
fi

mkdir -p "$here/target"
exec 9>"$here/target/.build.lock"
flock 9

# The SDK, as a user's project gets it: a `file:` dependency is a link, no registry involved.
if [ ! -f "$here/node_modules/@ackbar/guest/package.json" ]; then
  (cd "$here" && npm install --offline --no-audit --no-fund --loglevel=error) >&2
fi

# build NAME BACKEND OUTPUT
build() {
  local name="$1" engine="$2" out="$3"
  local stamp="$out.stamp" inputs
  inputs="$(
    {
      find "$here/src" "$sdk/src" "$sdk/bin" "$sdk/wit" -type f | LC_ALL=C sort | xargs -d '\n' sha256sum
      echo "$lock_hash $engine $(node --version)"
      sed -n '/^build()/,/^}/p' "$here/build.sh"
    } | sha256sum | cut -c1-16
  )"
  if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    echo "js: ${out#"$here"/} is up to date"
    return
  fi
  local start log tmp="$out.tmp"
  start=$(date +%s%N)
  log="$(mktemp)"
  rm -f "$tmp" "$stamp"
  # quickjs: componentize-qjs resolves '@ackbar/guest' in node_modules itself; starlingmonkey:
  # esbuild bundles the handler first (StarlingMonkey resolves only relative imports).
  if ! (
    cd "$here"
    node "$sdk/bin/ackbar-guest-build.js" "src/$name.js" -o "$tmp" --engine "$engine" \
      --tools "$tools/node_modules"
  ) >"$log" 2>&1 || [ ! -s "$tmp" ]; then
    cat "$log" >&2
    rm -f "$log" "$tmp"
    echo "js: building ${out#"$here"/} with $engine failed" >&2
    exit 1
  fi
  rm -f "$log"
  mv "$tmp" "$out"
  echo "$inputs" >"$stamp"
  local ms=$((($(date +%s%N) - start) / 1000000))
  printf 'js: %s (%s, %s bytes, %d.%d s)\n' "${out#"$here"/}" "$engine" \
    "$(stat -c %s "$out")" $((ms / 1000)) $((ms % 1000 / 100))
}

for engine in "${backends[@]}"; do
  suffix=""
  [ "$engine" = quickjs ] || suffix="-$engine"
  for name in orders manual enrich; do
    build "$name" "$engine" "$here/target/$name$suffix.wasm"
  done
done
