#!/usr/bin/env bash
# Builds the Python example handlers into WebAssembly components:
#   guest-examples/python/target/{orders,manual,enrich}.wasm
# with the ackbar-guest SDK (sdk/python) and its build helper, `python -m ackbar_guest.build`.
# `--bindings-only` writes the componentize-py bindings for the world to target/bindings (for
# type checkers of the SDK's Wasm side) and stops; `--quiet` prints only errors.
#
# Installs componentize-py (pinned with hashes in requirements.txt) into
# ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains/componentize-py-<version> when missing, keeping the
# wheels in ${ACKBAR_CACHE:-~/.cache/ackbar}/wheels; offline after that. A component is rebuilt
# only when its inputs (src/, the SDK, requirements.txt, this script) have changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sdk="$(cd "$here/../../sdk/python/src" && pwd)"
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
    local pip=("$tool/bin/python" -m pip --quiet --disable-pip-version-check --no-input)
    # The wheels are kept: new projects install componentize-py and setuptools from them offline.
    "${pip[@]}" download --require-hashes --only-binary=:all: --find-links "$wheels" \
        -d "$wheels" -r "$here/requirements.txt"
    "${pip[@]}" install --require-hashes --only-binary=:all: --no-index --find-links "$wheels" \
        -r "$here/requirements.txt"
    "$cpy" --version >/dev/null
    echo "$requirements" >"$tool/.complete"
}

mkdir -p "$cache/toolchains" "$cache/wheels" "$here/target"
cache="$(cd "$cache" && pwd)"
wheels="$cache/wheels"
tool="$cache/toolchains/componentize-py-$version"
cpy="$tool/bin/componentize-py"
requirements="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
# The venv is usable when it was finished from these requirements and its interpreter still runs
# (a system Python upgrade can break it). Checked again under the lock so that concurrent runs
# install it once.
toolchain_ok() {
    [ "$(cat "$tool/.complete" 2>/dev/null)" = "$requirements" ] && "$tool/bin/python" -c '' 2>/dev/null
}
if ! toolchain_ok; then
    exec 8>"$cache/toolchains/componentize-py-$version.lock"
    flock 8
    toolchain_ok || install_toolchain
    exec 8>&-
fi

# One build at a time in this folder.
exec 9>"$here/target/.build.lock"
flock 9

# Everything a component depends on, hashed (the SDK carries the WIT).
inputs_hash() {
    (
        echo "componentize-py $version"
        cd "$here"
        cat requirements.txt build.sh
        for f in src/*.py; do
            echo "$f"; cat "$f"
        done
        cd "$sdk"
        find ackbar_guest -type f ! -path '*/__pycache__/*' | LC_ALL=C sort |
            while read -r f; do echo "$f"; cat "$f"; done
    ) | sha256sum | cut -d' ' -f1
}
hash="$(inputs_hash)"

if $bindings_only; then
    if [ "$(cat "$here/target/bindings.stamp" 2>/dev/null)" != "$hash" ]; then
        rm -rf "$here/target/bindings"
        "$cpy" --quiet -d "$sdk/ackbar_guest/wit/ackbar.wit" -w handler bindings "$here/target/bindings"
        echo "$hash" >"$here/target/bindings.stamp"
    fi
    exit 0
fi

build() {
    local name="$1" out="$here/target/$1.wasm" stamp="$here/target/$1.stamp"
    if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
        say "python: target/$name.wasm is up to date"
        return
    fi
    local start=$SECONDS
    rm -f "$stamp"
    # Build from a copy of src/ and the SDK: componentize-py runs the app at build time, and its
    # Python writes __pycache__ next to the sources. The component's Python path is this copy and
    # the toolchain's virtualenv (the helper runs in it), whatever virtualenv is active here.
    local app="$here/target/app-$name"
    rm -rf "$app"
    mkdir -p "$app"
    cp "$here"/src/*.py "$app/"
    cp -r "$sdk/ackbar_guest" "$app/"
    rm -rf "$app/ackbar_guest/__pycache__"
    if ! (cd "$here/target" && env PYTHONPATH="$app" PYTHONDONTWRITEBYTECODE=1 \
        "$tool/bin/python" -m ackbar_guest.build "$name" -p "$app" -o "$out" \
        --componentize-py "$cpy") >"$here/target/$name.log" 2>&1; then
        cat "$here/target/$name.log" >&2
        echo "python: building target/$name.wasm failed" >&2
        exit 1
    fi
    echo "$hash" >"$stamp"
    say "python: target/$name.wasm ($(wc -c <"$out") bytes, $((SECONDS - start)) s)"
}

build orders
build manual
build enrich
