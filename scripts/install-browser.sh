#!/usr/bin/env bash
# Installs headless Chromium and ChromeDriver from Debian's packages (chromium, chromium-driver)
# for the console's browser tests. Idempotent; prints the two paths. Needs root or sudo.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
chromium=/usr/bin/chromium
driver=/usr/bin/chromedriver
bash "$here/apt-install.sh" install-browser "$chromium" "$driver" -- chromium chromium-driver
echo "$chromium $driver"
