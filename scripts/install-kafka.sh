#!/usr/bin/env bash
# Assembles Apache Kafka 4.4.0 (KRaft broker, and the tools behind kafka-acls.sh) from Maven Central into a cache outside the repo,
# because no Kafka distribution archive is reachable from our machines (only package registries).
# Idempotent: a marker written last means a complete libs/; prints the libs directory.
set -euo pipefail

version=4.4.0
home="${ACKBAR_CACHE:-$HOME/.cache/ackbar}/kafka-$version"
libs="$home/libs"

# The marker names what libs/ holds; an older one (without the tools) is assembled again.
marker="$home/.complete-broker-and-tools"
if [ -f "$marker" ]; then
  echo "$libs"
  exit 0
fi

# Tests start several brokers at once: one assembles, the others wait and then reuse it.
mkdir -p "$home"
exec 9>"$home.lock"
flock 9
if [ -f "$marker" ]; then
  echo "$libs"
  exit 0
fi

command -v java >/dev/null 2>&1 || { echo "install-kafka: java (17+) is missing" >&2; exit 1; }
command -v mvn >/dev/null 2>&1 || { echo "install-kafka: mvn is missing" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kafka-tools brings AclCommand (kafka-acls.sh), which the ACL tests run as an operator would;
# kafka_2.13 brings the broker, raft, storage and the server's transitive deps; Kafka 4 logs via
# slf4j -> log4j2, so the binding and core are added explicitly (they are not in its runtime
# scope); slf4j-api 2 is pinned because Kafka's own 1.7 API would not find the slf4j2 binding.
cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ackbar</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.25.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.25.3</version></dependency>
  </dependencies>
</project>
EOF

echo "install-kafka: resolving kafka_2.13:$version from Maven Central (first run takes a while)" >&2
rm -rf "$libs"
mkdir -p "$libs"
(cd "$work" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" >&2)

# Broker log config shared by every run: INFO to stdout, which broker.sh sends to broker.log;
# the ~300-line config dumps are muted so that the tail of a failed start shows the error.
cat >"$home/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF

touch "$marker"
echo "$libs"
