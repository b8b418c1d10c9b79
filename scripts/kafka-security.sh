#!/bin/sh
# Prints the security half of ci-runner's Kafka server.properties: a SASL_PLAINTEXT listener named SASL_PLAINTEXT
# (SCRAM-SHA-256/512) for clients and between brokers, the controller listener with SASL PLAIN for the admin only,
# StandardAuthorizer, no access without an ACL, admin the only super user. Used by scripts/services.sh
# (CI_RUNNER_SECURE=1) and by docker-compose.yml's Kafka (deploy/kafka-secure.sh). POSIX sh.
# Usage: kafka-security.sh <file holding the admin's password> >> server.properties
set -eu
admin="$(cat "$1")"
cat <<PROPS
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
