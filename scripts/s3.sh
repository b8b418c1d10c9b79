#!/usr/bin/env bash
# S3Proxy (org.gaul:s3proxy from Maven Central, on this machine's Java) serving the S3 API on 127.0.0.1 over a local
# directory, with one bucket, for the S3 artefact store's tests.
# Usage: scripts/s3.sh up|down|env      Data and logs live in .services/s3 (git-ignored).
set -euo pipefail

SAY_PREFIX=s3
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="${CI_RUNNER_SERVICES_DIR:-$ROOT/.services}/s3"
PORT="${CI_RUNNER_S3_PORT:-19300}"
BUCKET=ci-runner-artefacts
IDENTITY=ci-runner-local
CREDENTIAL=ci-runner-local-secret

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  maven_jars "$ROOT/services/s3proxy/pom.xml" "$STATE/libs" S3Proxy
  if alive "$STATE/s3proxy.pid"; then
    say "S3Proxy already running on 127.0.0.1:$PORT"
    return
  fi
  mkdir -p "$STATE/data/$BUCKET"
  cat >"$STATE/s3proxy.conf" <<CONF
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$IDENTITY
s3proxy.credential=$CREDENTIAL
jclouds.provider=filesystem-nio2
jclouds.identity=$IDENTITY
jclouds.credential=$CREDENTIAL
jclouds.filesystem.basedir=$STATE/data
CONF
  # Without a configuration, logback logs every request at DEBUG.
  cat >"$STATE/logback.xml" <<'XML'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %level %logger{20} %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
XML
  say "starting S3Proxy on 127.0.0.1:$PORT (bucket $BUCKET)"
  java -Xms64m -Xmx256m -XX:+UseSerialGC -Dlogback.configurationFile="$STATE/logback.xml" -cp "$STATE/libs/*" \
    org.gaul.s3proxy.Main \
    --properties "$STATE/s3proxy.conf" >"$STATE/s3proxy.log" 2>&1 &
  echo $! >"$STATE/s3proxy.pid"
  for _ in $(seq 1 300); do
    # Listening means serving: S3Proxy opens its port once its storage is ready.
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      say "S3Proxy ready"
      return
    fi
    alive "$STATE/s3proxy.pid" || die "S3Proxy exited during start-up; see $STATE/s3proxy.log"
    sleep 0.1
  done
  die "S3Proxy did not start within 30 s; see $STATE/s3proxy.log"
}

down() {
  if alive "$STATE/s3proxy.pid"; then
    say "stopping S3Proxy"
    kill "$(cat "$STATE/s3proxy.pid")"
    for _ in $(seq 1 100); do alive "$STATE/s3proxy.pid" || break; sleep 0.1; done
    alive "$STATE/s3proxy.pid" && kill -9 "$(cat "$STATE/s3proxy.pid")"
  fi
  rm -f "$STATE/s3proxy.pid"
}

print_env() {
  echo "export S3_ENDPOINT=http://127.0.0.1:$PORT"
  echo "export S3_BUCKET=$BUCKET"
  echo "export S3_REGION=us-east-1"
  echo "export AWS_ACCESS_KEY_ID=$IDENTITY"
  echo "export AWS_SECRET_ACCESS_KEY=$CREDENTIAL"
}

case "${1:-}" in
  up) up; print_env ;;
  down) down ;;
  env) print_env ;;
  *) die "usage: $0 up|down|env" ;;
esac
