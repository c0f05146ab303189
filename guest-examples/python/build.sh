#!/usr/bin/env bash
# Builds the Python example handlers into WebAssembly components:
#   guest-examples/python/target/{orders,manual,enrich}.wasm
# and the Python bindings for the WIT world into target/bindings/ (for editors, type checkers and
# the native tests). `--bindings-only` stops after the bindings; `--quiet` prints only errors.
#
# Installs componentize-py (pinned with hashes in requirements.txt) into
# ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains/componentize-py-<version> when missing; offline after
# that. A component is rebuilt only when its inputs (src/, the WIT, requirements.txt, this script)
# have changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../wit" && pwd)"
cache="${ACKBAR_CACHE:-$HOME/.cache/ackbar}"
version="$(sed -n 's/^componentize-py==\([^ ]*\).*/\1/p' "$here/requirements.txt")"

bindings_only=false quiet=false
for arg in "$@"; do
    case "$arg" in
        --bindings-only) bindings_only=true ;;
        -q | --quiet) quiet=true ;;
        *) echo "usage: $0 [--quiet] [--bindings-only]" >&2; exit 2 ;;
    esac
done
say() { $quiet || echo "$@"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_toolchain() {
    # python3 with venv (Debian splits ensurepip into python3-venv).
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "python: installing python3 and python3-venv (apt-get)" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    rm -rf "$tool"
    python3 -m venv "$tool"
    "$tool/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes --only-binary=:all: -r "$here/requirements.txt"
    "$cpy" --version >/dev/null
    touch "$tool/.complete"
}

mkdir -p "$cache/toolchains" "$here/target"
cache="$(cd "$cache" && pwd)"
tool="$cache/toolchains/componentize-py-$version"
cpy="$tool/bin/componentize-py"
# The venv is usable when it was finished and its interpreter still runs (a system Python upgrade
# can break it). Checked again under the lock so that concurrent runs install it once.
if [ ! -e "$tool/.complete" ] || ! "$tool/bin/python" -c '' 2>/dev/null; then
    exec 8>"$cache/toolchains/componentize-py-$version.lock"
    flock 8
    if [ ! -e "$tool/.complete" ] || ! "$tool/bin/python" -c '' 2>/dev/null; then
        install_toolchain
    fi
    exec 8>&-
fi

# One build at a time in this folder.
exec 9>"$here/target/.build.lock"
flock 9

# Everything a component depends on, hashed.
inputs_hash() {
    (
        cd "$here"
        echo "componentize-py $version"
        cat requirements.txt build.sh
        for f in src/*.py; do
            echo "$f"; cat "$f"
        done
        cd "$wit"
        find . -type f | LC_ALL=C sort | while read -r f; do echo "$f"; cat "$f"; done
    ) | sha256sum | cut -d' ' -f1
}
hash="$(inputs_hash)"

# Bindings: not needed by componentize (it generates its own), only for code outside the component.
if [ "$(cat "$here/target/bindings.stamp" 2>/dev/null)" != "$hash" ]; then
    rm -rf "$here/target/bindings"
    "$cpy" --quiet -d "$wit" -w handler bindings "$here/target/bindings"
    echo "$hash" >"$here/target/bindings.stamp"
fi
$bindings_only && exit 0

build() {
    local name="$1" out="$here/target/$1.wasm" stamp="$here/target/$1.stamp"
    if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
        say "python: target/$name.wasm is up to date"
        return
    fi
    local start=$SECONDS
    rm -f "$stamp"
    # Build from a copy of src/: componentize-py runs the app at build time, and its Python
    # writes __pycache__ next to the sources. Run outside any virtualenv, whose site-packages
    # componentize-py would add to the component.
    local app="$here/target/app-$name"
    rm -rf "$app"
    mkdir -p "$app"
    cp "$here"/src/*.py "$app/"
    if ! (cd "$here/target" && env -u VIRTUAL_ENV \
        "$cpy" -d "$wit" -w handler componentize "$name" -p "$app" -o "$out.tmp") \
        >"$here/target/$name.log" 2>&1; then
        cat "$here/target/$name.log" >&2
        echo "python: building target/$name.wasm failed" >&2
        exit 1
    fi
    mv -f "$out.tmp" "$out"
    echo "$hash" >"$stamp"
    say "python: target/$name.wasm ($(wc -c <"$out") bytes, $((SECONDS - start)) s)"
}

build orders
build manual
build enrich
