#!/usr/bin/env bash
# FastStream side of the end-to-end benchmark:
#   benches/faststream/run.sh [bench.py|produce.py] ARGS...
# Runs bench.py (the default) or produce.py with ARGS in a virtualenv holding the pinned
# requirements.txt, at ${ACKBAR_CACHE:-~/.cache/ackbar}/toolchains/faststream-venv-<hash of
# requirements.txt>; the venv is made on first use (PyPI), offline after that. Works from any
# working directory; see README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${ACKBAR_CACHE:-$HOME/.cache/ackbar}"
hash="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
venv="$cache/toolchains/faststream-venv-$hash"
py="$venv/bin/python"

script=bench.py
case "${1:-}" in
    bench.py|produce.py) script="$1"; shift ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_venv() {
    # python3 with venv (Debian splits ensurepip into python3-venv).
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        echo "faststream bench: installing python3 and python3-venv (apt-get)" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    echo "faststream bench: creating $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes --only-binary=:all: -r "$here/requirements.txt"
    "$py" -c 'import faststream.kafka, aiokafka'
    touch "$venv/.complete"
}

# Usable when it was finished and its interpreter still runs (a system Python upgrade can break
# it). Checked again under the lock so that concurrent runs install it once.
if [ ! -e "$venv/.complete" ] || ! "$py" -c '' 2>/dev/null; then
    mkdir -p "$cache/toolchains"
    exec 8>"$venv.lock"
    flock 8
    if [ ! -e "$venv/.complete" ] || ! "$py" -c '' 2>/dev/null; then
        install_venv
    fi
    exec 8>&-
fi

exec "$py" "$here/$script" "$@"
