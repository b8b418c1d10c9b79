# shellcheck shell=bash
# The authenticated deployment's users, rules and ACLs, sourced by scripts/services.sh when CI_RUNNER_SECURE=1.
# One password per role and service, made once, in $STATE/credentials/ (mode 600): redis-<role>, kafka-<role>.

REDIS_ROLES=(admin bridge worker board cli)
KAFKA_ROLES=(admin bridge worker orchestrator)

secure_credentials() {
  local dir="$STATE/credentials" role
  mkdir -p "$dir"
  chmod 700 "$dir"
  for role in "${REDIS_ROLES[@]/#/redis-}" "${KAFKA_ROLES[@]/#/kafka-}"; do
    [ -s "$dir/$role" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/$role")
  done
}

# Redis's ACL file (scripts/redis-users.sh, which docker-compose.yml's Redis runs too).
secure_redis_acl() {
  (umask 077 && sh "$ROOT/scripts/redis-users.sh" "$STATE/credentials" >"$1")
}

# Kafka: the listeners made SASL_PLAINTEXT, then the security settings of scripts/kafka-security.sh.
secure_kafka_config() {
  local file="$1"
  sed -i -e "s#^listeners=.*#listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT#" \
    -e "s#^advertised.listeners=.*#advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT#" \
    -e "s#^inter.broker.listener.name=.*#inter.broker.listener.name=SASL_PLAINTEXT#" \
    -e "s#^listener.security.protocol.map=.*#listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT#" \
    "$file"
  sh "$ROOT/scripts/kafka-security.sh" "$STATE/credentials/kafka-admin" >>"$file"
  chmod 600 "$file"
}

# StorageTool's --add-scram arguments: every role's SCRAM credentials, written when the storage is formatted.
secure_kafka_users() {
  local role password
  for role in "${KAFKA_ROLES[@]}"; do
    password="$(cat "$STATE/credentials/kafka-$role")"
    echo "--add-scram"
    echo "SCRAM-SHA-256=[name=$role,password=$password]"
    echo "--add-scram"
    echo "SCRAM-SHA-512=[name=$role,password=$password]"
  done
}

# Creates the topics and each role's ACLs (scripts/kafka-acls.mjs, as admin). Idempotent.
secure_kafka_acls() {
  say "creating Kafka topics and per-role ACLs"
  KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT" KAFKA_ADMIN_PASSWORD_FILE="$STATE/credentials/kafka-admin" \
    node "$ROOT/scripts/kafka-acls.mjs" >>"$STATE/kafka/acls.log" 2>&1 ||
    die "creating Kafka ACLs failed; see $STATE/kafka/acls.log"
}
