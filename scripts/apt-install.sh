#!/usr/bin/env bash
# Installs Debian packages for a test tool unless its files are there already:
#   apt-install.sh WHO FILE... -- PACKAGE...
# WHO names the caller in errors. Idempotent. Needs root or sudo. Tests may ask at once, and
# `make test` installs the browser and the registry side by side: one apt-get at a time (a
# second one would fail on dpkg's lock), the others wait, then find the files there.
set -euo pipefail

who="$1"; shift
files=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
shift
packages=("$@")

present() {
  local f
  for f in "${files[@]}"; do [ -x "$f" ] || return 1; done
}
present && exit 0

exec 9>"${TMPDIR:-/tmp}/ackbar-apt-install.lock"
flock 9
present && exit 0

as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "$who: needs root or sudo for apt-get" >&2; exit 1; }
  as_root=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
present || { echo "$who: ${files[*]} missing after apt-get install ${packages[*]}" >&2; exit 1; }
