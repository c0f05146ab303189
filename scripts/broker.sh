#!/usr/bin/env bash
# Runs a single-node Kafka-protocol broker on 127.0.0.1:PORT for integration tests and by hand:
#   scripts/broker.sh kafka|kafka-sasl|tansu PORT DATA_DIR [PARENT_PID]
# Stays in the foreground while the broker runs; prints "ready 127.0.0.1:PORT" once the port
# accepts connections. The broker is stopped when this script gets SIGTERM/SIGINT/SIGHUP or when
# PARENT_PID (the test process) is gone, so a test that dies cannot leave an orphan broker.
# (SIGKILL to this script itself cannot be caught: pass PARENT_PID rather than rely on that.
# A script started with "&" from another non-interactive script ignores SIGINT: use SIGTERM.)
# With BROKER_REMOVE_DATA=1, DATA_DIR is deleted once the broker stopped because PARENT_PID is
# gone (a test process keeps its broker in a static that is never dropped, so nothing else would).
# Broker output goes to DATA_DIR/broker.log. "kafka" = Apache Kafka 4.4.0 (KRaft, data kept in
# DATA_DIR across restarts); "kafka-sasl" = the same with SASL/PLAIN and the standard authorizer:
# users admin (a super user), shop and analytics, each with the password "<user>-secret", and
# nothing allowed to the others without an ACL; "tansu" = tansu 0.6 (memory storage: nothing
# survives a restart).
set -euo pipefail

usage() { echo "usage: $0 kafka|kafka-sasl|tansu PORT DATA_DIR [PARENT_PID]" >&2; exit 2; }
[ $# -ge 3 ] && [ $# -le 4 ] || usage
kind="$1" port="$2" data="$3" parent="${4:-}"
[[ "$kind" =~ ^(kafka|kafka-sasl|tansu)$ && "$port" =~ ^[0-9]+$ ]] || usage
[ -z "$parent" ] || [[ "$parent" =~ ^[0-9]+$ ]] || usage
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$data"
data="$(cd "$data" && pwd)"
log="$data/broker.log"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# SIGTERM first (Kafka shuts down cleanly in a few seconds), SIGKILL if it hangs.
pid=""
# shellcheck disable=SC2329 # called from the traps below
stop() {
  trap - TERM INT HUP PIPE EXIT
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
trap 'stop; exit 143' TERM
trap 'stop; exit 130' INT
trap 'stop; exit 129' HUP
# A reader that closed our stdout/stderr must not kill this script before it stops the broker.
trap 'stop; exit 141' PIPE
trap stop EXIT

# Something else already on the port would make the readiness probe lie.
ports=("$port")
[ "$kind" != tansu ] && ports+=("$((port + 1))")
for p in "${ports[@]}"; do
  if listening "$p"; then echo "broker.sh: 127.0.0.1:$p is already in use" >&2; exit 1; fi
done
: >"$log"

case "$kind" in
  kafka|kafka-sasl)
    libs="$("$here/install-kafka.sh")"
    home="$(dirname "$libs")"
    cport=$((port + 1))
    # Single combined broker+controller with a static quorum; replication factors of 1 and a
    # single offsets partition because there is one node and start-up time matters in tests;
    # KIP-848 groups heartbeat every 500 ms so assignments move in tests within a second. Share
# groups (KIP-932) keep their state in __share_group_state (one replica here); their lower
# bounds are lowered so a test may give its group a 1 s acquisition lock.
    cat >"$data/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
log.dirs=$data/logs
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=500
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.share.min.record.lock.duration.ms=1000
group.share.min.delivery.count.limit=2
group.share.min.heartbeat.interval.ms=500
group.share.heartbeat.interval.ms=500
group.share.min.session.timeout.ms=6000
group.share.session.timeout.ms=10000
EOF
    if [ "$kind" = kafka ]; then
      cat >>"$data/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
    else
      # The controller listener stays PLAINTEXT on loopback; its anonymous principal is the
      # node talking to itself, hence a super user.
      cat >>"$data/server.properties" <<EOF
listeners=SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_shop="shop-secret" user_analytics="analytics-secret";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
    fi
    java_cmd=(java -Xmx512m -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$libs/*")
    # Format only once so that a restart on the same DATA_DIR keeps topics and offsets. The
    # cluster id is a random 16-byte base64url UUID, as StorageTool random-uuid makes, without
    # paying for an extra JVM start.
    if [ ! -f "$data/logs/meta.properties" ]; then
      cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)"
      # `--cluster-id=`: an id may start with "-", which a separate argument would parse as a flag.
      if ! "${java_cmd[@]}" kafka.tools.StorageTool format --cluster-id="$cluster_id" \
          -c "$data/server.properties" >>"$log" 2>&1; then
        echo "broker.sh: formatting $data/logs failed:" >&2
        tail -n 30 "$log" >&2
        exit 1
      fi
    fi
    cmd=("${java_cmd[@]}" kafka.Kafka "$data/server.properties")
    ;;
  tansu)
    bin="$("$here/install-tansu.sh")"
    cmd=("$bin" broker --listener-url "tcp://127.0.0.1:$port"
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/)
    ;;
esac

"${cmd[@]}" >>"$log" 2>&1 &
pid=$!

parent_gone() { [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; }

# The parent is gone: stop the broker and, if asked, delete its data.
orphaned() {
  stop
  [ "${BROKER_REMOVE_DATA:-}" != 1 ] || rm -rf "$data"
  exit 0
}

fail() {
  echo "broker.sh: $kind $1; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

deadline=$((SECONDS + 60))
# Every port: a Kafka whose client port is up may still fail to bind its controller's.
all_listening() { for p in "${ports[@]}"; do listening "$p" || return 1; done; }
until all_listening; do
  kill -0 "$pid" 2>/dev/null || fail "exited before it was ready"
  parent_gone && orphaned
  [ "$SECONDS" -lt "$deadline" ] || fail "was not ready within 60 s"
  sleep 0.1
done
echo "ready 127.0.0.1:$port"

# "sleep & wait" rather than a plain sleep so that a signal's trap runs at once.
while kill -0 "$pid" 2>/dev/null; do
  parent_gone && orphaned
  sleep 0.5 &
  wait $! || true
done
trap - EXIT
status=0
wait "$pid" || status=$?
echo "broker.sh: $kind exited with status $status" >&2
exit "$status"
