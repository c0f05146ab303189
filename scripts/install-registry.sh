#!/usr/bin/env bash
# Installs the OCI registry (Distribution v2) from Debian's package (docker-registry) for the
# tests that push and pull Wasm components. Idempotent; prints the binary's path. Needs root or
# sudo.
set -euo pipefail

registry=/usr/bin/docker-registry
if [ -x "$registry" ]; then
  echo "$registry"
  exit 0
fi

# Tests may ask at once, and `make test` installs the browser and the registry side by side:
# one apt-get at a time (a second one would fail on dpkg's lock), the others wait.
exec 9>"${TMPDIR:-/tmp}/ackbar-apt-install.lock"
flock 9
if [ -x "$registry" ]; then
  echo "$registry"
  exit 0
fi

as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-registry: needs root or sudo for apt-get" >&2; exit 1; }
  as_root=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq --no-install-recommends docker-registry >&2
# The package also enables a system registry on port 5000 of every interface; the tests start
# their own on loopback, so the one this install started is stopped.
if [ -d /run/systemd/system ]; then
  "${as_root[@]}" systemctl disable --now docker-registry.service >&2 || true
fi
[ -x "$registry" ] || { echo "install-registry: $registry missing after apt-get" >&2; exit 1; }
echo "$registry"
