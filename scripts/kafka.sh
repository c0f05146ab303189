#!/usr/bin/env bash
# Starts Apache Kafka 4.4.0 in the foreground for a person trying Ackbar by hand:
#   scripts/kafka.sh [PORT]   (default 9092; the KRaft controller takes PORT+1)
# Data lives in a temp dir that is removed on exit; Ctrl-C stops the broker.
set -euo pipefail
port="${1:-9092}"
here="$(cd "$(dirname "$0")" && pwd)"
data="$(mktemp -d "${TMPDIR:-/tmp}/ackbar-kafka.XXXXXX")"
trap 'rm -rf "$data"' EXIT
echo "kafka.sh: broker log in $data/broker.log; Ctrl-C stops it" >&2
# broker.sh prints "ready 127.0.0.1:PORT" once; turn it into the line to paste into a config.
"$here/broker.sh" kafka "$port" "$data" | while read -r _ addr; do
  echo "bootstrap.servers=$addr"
done
