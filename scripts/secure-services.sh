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

# Redis ACL users (Redis 7 selectors): no default user; the bridge and workers read and write only the runner's
# keys (BullMQ's bull:* and the runner's ci-runner:*), with no administrative or dangerous command; the board and
# the CLI only read them. Redis checks every command a Lua script runs against its caller's rules, so BullMQ's
# reading scripts work for them and one that writes (a worker's moveToActive, say) is refused (NOPERM). (Key
# selectors like %R~ cannot express it: EVAL needs write access to every key it declares.)
secure_redis_acl() {
  local file="$1" dir="$STATE/credentials"
  local keys='~bull:* ~ci-runner:*'
  local basics='+@connection +info +client|setname +client|getname +client|id'
  local scripts='+eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists'
  {
    echo "user default off resetkeys resetchannels -@all"
    echo "user admin on #$(sha256 "$dir/redis-admin") ~* &* +@all"
    for role in bridge worker; do
      echo "user $role on #$(sha256 "$dir/redis-$role") resetchannels $keys +@all -@dangerous -@admin $basics"
    done
    for role in board cli; do
      echo "user $role on #$(sha256 "$dir/redis-$role") resetchannels $keys -@all +@read -@dangerous $scripts $basics"
    done
  } >"$file"
  chmod 600 "$file"
}

sha256() { printf '%s' "$(cat "$1")" | sha256sum | cut -d' ' -f1; }

# Kafka: a SASL_PLAINTEXT listener (SCRAM-SHA-256/512) for clients and between brokers, the controller's listener
# with SASL PLAIN for the admin only, StandardAuthorizer, no access without an ACL; admin is the only super user.
secure_kafka_config() {
  local file="$1" admin
  admin="$(cat "$STATE/credentials/kafka-admin")"
  sed -i -e "s#^listeners=.*#listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT#" \
    -e "s#^advertised.listeners=.*#advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$KAFKA_PORT#" \
    -e "s#^inter.broker.listener.name=.*#inter.broker.listener.name=SASL_PLAINTEXT#" \
    -e "s#^listener.security.protocol.map=.*#listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT#" \
    "$file"
  cat >>"$file" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin" user_admin="$admin";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
PROPS
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
