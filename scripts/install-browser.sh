#!/usr/bin/env bash
# Installs headless Chromium and ChromeDriver from Debian's packages (chromium, chromium-driver)
# for the console's browser tests. Idempotent; prints the two paths. Needs root or sudo.
set -euo pipefail

chromium=/usr/bin/chromium
driver=/usr/bin/chromedriver
if [ -x "$chromium" ] && [ -x "$driver" ]; then
  echo "$chromium $driver"
  exit 0
fi

# Tests may ask at once, and `make test` installs the browser and the registry side by side:
# one apt-get at a time (a second one would fail on dpkg's lock), the others wait.
exec 9>"${TMPDIR:-/tmp}/ackbar-apt-install.lock"
flock 9
if [ -x "$chromium" ] && [ -x "$driver" ]; then
  echo "$chromium $driver"
  exit 0
fi

as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-browser: needs root or sudo for apt-get" >&2; exit 1; }
  as_root=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
[ -x "$chromium" ] && [ -x "$driver" ] || { echo "install-browser: $chromium or $driver missing after apt-get" >&2; exit 1; }
echo "$chromium $driver"
