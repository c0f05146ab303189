#!/usr/bin/env bash
# Installs the OCI registry (Distribution v2) from Debian's package (docker-registry) for the
# tests that push and pull Wasm components. Idempotent; prints the binary's path. Needs root or
# sudo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
registry=/usr/bin/docker-registry
if [ ! -x "$registry" ]; then
  bash "$here/apt-install.sh" install-registry "$registry" -- docker-registry
  # The package also enables a system registry on port 5000 of every interface; the tests
  # start their own on loopback, so the one this install started is stopped.
  if [ -d /run/systemd/system ]; then
    as_root=()
    [ "$(id -u)" = 0 ] || as_root=(sudo -n)
    "${as_root[@]}" systemctl disable --now docker-registry.service >&2 || true
  fi
fi
echo "$registry"
