#!/bin/sh
# docker-compose.yml's Kafka (the apache/kafka image): one KRaft broker+controller with the security settings of
# scripts/kafka-security.sh, and a SCRAM user per role (admin, bridge, worker, orchestrator) from the Docker secrets
# /run/secrets/kafka-<role>, written when the storage is first formatted (a changed password needs the storage
# formatted again, or kafka-configs.sh --alter as admin). Topics and ACLs: the kafka-acls service.
set -eu
umask 077
props=/tmp/server.properties
cat >"$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=SASL_PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=SASL_PLAINTEXT://kafka:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
log.dirs=/var/lib/kafka/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
sh /opt/ci-runner/kafka-security.sh /run/secrets/kafka-admin >>"$props"
# Formatted once: the users' passwords are on that one command line, never again.
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  for role in admin bridge worker orchestrator; do
    password="$(cat "/run/secrets/kafka-$role")"
    set -- "$@" --add-scram "SCRAM-SHA-256=[name=$role,password=$password]" \
      --add-scram "SCRAM-SHA-512=[name=$role,password=$password]"
  done
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "${KAFKA_CLUSTER_ID:?}" --config "$props" "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$props"
