#!/usr/bin/env bash
# Apache Kafka's kafka-acls.sh (AclCommand) from the libs scripts/install-kafka.sh assembles, for
# tests and by hand where no Kafka distribution is installed. Takes kafka-acls.sh's arguments:
#   scripts/kafka-acls.sh --bootstrap-server HOST:PORT --command-config admin.properties --add ...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
libs="$("$here/install-kafka.sh")"
quiet="$(mktemp --suffix=.properties)"
trap 'rm -f "$quiet"' EXIT
printf 'rootLogger.level = WARN\nrootLogger.appenderRef.stderr.ref = STDERR\nappender.stderr.type = Console\nappender.stderr.name = STDERR\nappender.stderr.target = SYSTEM_ERR\nappender.stderr.layout.type = PatternLayout\nappender.stderr.layout.pattern = %%p %%m%%n\n' >"$quiet"
exec java -Xmx256m -Dlog4j2.configurationFile="$quiet" -cp "$libs/*" org.apache.kafka.tools.AclCommand "$@"
