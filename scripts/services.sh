#!/usr/bin/env bash
# Installs on demand, starts, health-checks and stops the real services ci-runner needs, on 127.0.0.1:
#   Redis (Debian's redis-server, AOF appendfsync always, noeviction) and Apache Kafka (KRaft, jars from Maven).
# Usage: scripts/services.sh up|down|status|env     Data and logs live in .services/ (git-ignored).
# CI_RUNNER_SECURE=1: the authenticated deployment instead (.services/secure/, other ports): Redis with one ACL user
# per role and no default user, Kafka with SASL/SCRAM, StandardAuthorizer and per-role ACLs; each role's password
# is in .services/secure/credentials/ (scripts/secure-services.sh writes the users, rules and ACLs).
set -euo pipefail

SAY_PREFIX=services
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECURE="${CI_RUNNER_SECURE:-0}"
if [ "$SECURE" = 1 ]; then
  STATE="${CI_RUNNER_SERVICES_DIR:-$ROOT/.services/secure}"
  REDIS_PORT="${CI_RUNNER_REDIS_PORT:-16380}"
  KAFKA_PORT="${CI_RUNNER_KAFKA_PORT:-19094}"
  KAFKA_CONTROLLER_PORT="${CI_RUNNER_KAFKA_CONTROLLER_PORT:-19095}"
  # shellcheck source=scripts/secure-services.sh
  . "$(dirname "${BASH_SOURCE[0]}")/secure-services.sh"
else
  STATE="${CI_RUNNER_SERVICES_DIR:-$ROOT/.services}"
  REDIS_PORT="${CI_RUNNER_REDIS_PORT:-16379}"
  KAFKA_PORT="${CI_RUNNER_KAFKA_PORT:-19092}"
  KAFKA_CONTROLLER_PORT="${CI_RUNNER_KAFKA_CONTROLLER_PORT:-19093}"
fi
# The admin's credentials for the health checks of the secure mode (empty otherwise).
REDIS_CLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------- Redis ----------
redis_up() {
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$STATE/redis"
  local secure=()
  if [ "$SECURE" = 1 ]; then
    secure_credentials
    secure_redis_acl "$STATE/redis/users.acl"
    secure=(--aclfile "$STATE/redis/users.acl")
    # The password through the environment, never on a command line that ps shows.
    REDISCLI_AUTH="$(cat "$STATE/credentials/redis-admin")"
    export REDISCLI_AUTH
    REDIS_CLI+=(--user admin)
  fi
  if "${REDIS_CLI[@]}" ping 2>/dev/null | grep -q PONG; then
    say "Redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  say "starting Redis on 127.0.0.1:$REDIS_PORT (AOF appendfsync always, maxmemory-policy noeviction${secure:+, ACL users per role})"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$STATE/redis" \
    --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction --save '' ${secure[@]+"${secure[@]}"}
  for _ in $(seq 1 100); do
    "${REDIS_CLI[@]}" ping 2>/dev/null | grep -q PONG && { say "Redis ready"; return; }
    sleep 0.1
  done
  die "Redis did not answer PING; see $STATE/redis/redis.log"
}

redis_down() {
  if alive "$STATE/redis/redis.pid"; then
    say "stopping Redis"
    kill "$(cat "$STATE/redis/redis.pid")"
    for _ in $(seq 1 50); do alive "$STATE/redis/redis.pid" || break; sleep 0.1; done
  fi
  rm -f "$STATE/redis/redis.pid"
}

# ---------- Kafka ----------
kafka_libs() { maven_jars "$ROOT/services/kafka/pom.xml" "$STATE/kafka/libs" "Apache Kafka"; }

kafka_config() {
  local dir="$STATE/kafka"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=16777216
auto.create.topics.enable=false
PROPS
  cat >"$dir/log4j2.properties" <<'PROPS'
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=${sys:kafka.logs.dir}/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS
}

KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseSerialGC -Dkafka.logs.dir="$STATE/kafka"
  -Dlog4j2.configurationFile="$STATE/kafka/log4j2.properties" -cp "$STATE/kafka/libs/*")

kafka_up() {
  kafka_libs
  local dir="$STATE/kafka"
  if alive "$dir/kafka.pid"; then
    say "Kafka already running on 127.0.0.1:$KAFKA_PORT"
    return
  fi
  mkdir -p "$dir/data"
  kafka_config
  local users=()
  if [ "$SECURE" = 1 ]; then
    secure_credentials
    secure_kafka_config "$dir/server.properties"
    mapfile -t users < <(secure_kafka_users)
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    say "formatting Kafka storage (KRaft${users[0]:+, SCRAM users per role})"
    local cluster_id
    cluster_id="$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --config "$dir/server.properties" --cluster-id "$cluster_id" \
      --ignore-formatted ${users[@]+"${users[@]}"} >"$dir/format.log" 2>&1 ||
      die "formatting Kafka storage failed; see $dir/format.log"
  fi
  say "starting Kafka (KRaft, broker+controller) on 127.0.0.1:$KAFKA_PORT"
  : >"$dir/server.log"
  "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
  for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
      say "Kafka ready"
      if [ "$SECURE" = 1 ]; then secure_kafka_acls; fi
      return
    fi
    alive "$dir/kafka.pid" || die "Kafka exited during start-up; see $dir/server.log and $dir/stdout.log"
    sleep 0.1
  done
  die "Kafka did not start within 60 s; see $dir/server.log"
}

kafka_down() {
  local pidfile="$STATE/kafka/kafka.pid"
  if alive "$pidfile"; then
    say "stopping Kafka"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 300); do alive "$pidfile" || break; sleep 0.1; done
    alive "$pidfile" && kill -9 "$(cat "$pidfile")"
  fi
  rm -f "$pidfile"
  # A broker whose pid file was lost still names its own config on its command line.
  pkill -9 -f "kafka.Kafka $STATE/kafka/server.properties" 2>/dev/null || true
}

print_env() {
  echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
  echo "export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
  if [ "$SECURE" = 1 ]; then
    echo "export KAFKA_SASL_MECHANISM=scram-sha-256"
    echo "export CI_RUNNER_CREDENTIALS=$STATE/credentials"
  fi
}

case "${1:-}" in
  up) redis_up; kafka_up; print_env ;;
  down) kafka_down; redis_down ;;
  redis-up) redis_up ;;
  redis-down) redis_down ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  status)
    alive "$STATE/redis/redis.pid" && echo "redis: running on 127.0.0.1:$REDIS_PORT" || echo "redis: stopped"
    alive "$STATE/kafka/kafka.pid" && echo "kafka: running on 127.0.0.1:$KAFKA_PORT" || echo "kafka: stopped"
    ;;
  env) print_env ;;
  *) die "usage: $0 up|down|status|env|redis-up|redis-down|kafka-up|kafka-down" ;;
esac
