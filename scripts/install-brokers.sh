#!/usr/bin/env bash
# Installs what the integration tests' brokers need when missing: a Java runtime and Maven
# (Debian packages), then Apache Kafka 4.4 and tansu into the cache (see install-kafka.sh,
# install-tansu.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v python3 >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "install-brokers: installing ${need[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "install-brokers: missing ${need[*]}; install them to run the broker tests" >&2
    exit 1
  fi
fi
echo "Apache Kafka: $("$here/install-kafka.sh")"
echo "tansu: $("$here/install-tansu.sh")"
