#!/usr/bin/env bash
# `npm start`: runs the bridge, one worker and the board. When REDIS_URL / KAFKA_BROKERS are not set, starts local Redis and
# Kafka first (scripts/services.sh) and stops them again on exit. Ctrl-C stops everything.
set -euo pipefail
SAY_PREFIX=start
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_deps
started_services=0
if [ -z "${REDIS_URL:-}" ] || [ -z "${KAFKA_BROKERS:-}" ]; then
  say "REDIS_URL or KAFKA_BROKERS not set: starting local services"
  local_env="$(scripts/services.sh up)"
  started_services=1
  [ -n "${REDIS_URL:-}" ] || export REDIS_URL="$(sed -n 's/^export REDIS_URL=//p' <<<"$local_env")"
  [ -n "${KAFKA_BROKERS:-}" ] || export KAFKA_BROKERS="$(sed -n 's/^export KAFKA_BROKERS=//p' <<<"$local_env")"
fi
if [ -t 1 ] && [ -z "${LOG_PRETTY:-}" ]; then export LOG_PRETTY=true; fi

pids=()
stop() {
  trap - INT TERM EXIT
  say "stopping bridge, worker and board"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  if [ "$started_services" = 1 ]; then scripts/services.sh down; fi
}
trap stop INT TERM EXIT

node --import tsx src/bridge/main.ts &
pids+=($!)
node --import tsx src/worker/main.ts &
pids+=($!)
if [ -z "${BOARD_USERNAME:-}" ]; then
  # No board credentials configured: serve it on loopback only, which the board allows without authentication.
  export BOARD_HOST=127.0.0.1 BOARD_ALLOW_NO_AUTH=true
fi
node --import tsx src/board/main.ts &
pids+=($!)

cat >&2 <<INFO

  ci-runner is running
    Redis          $REDIS_URL
    Kafka          $KAFKA_BROKERS
    consumes       ${TOPIC_COMMIT_RESULTS:-commit-results}   (bad input -> ${TOPIC_DEAD_LETTER:-commit-results.dlq})
    publishes      ${TOPIC_BUILD_REPORTS:-build-reports}
    queue          ${QUEUE_NAME:-builds}   (worker concurrency ${WORKER_CONCURRENCY:-2})
    artefacts      ${ARTEFACT_DIR:-./artefacts}
    Bull Board     http://${BOARD_HOST:-127.0.0.1}:${BOARD_PORT:-9800}/
    metrics        worker http://127.0.0.1:${WORKER_METRICS_PORT:-9700}/metrics, bridge http://127.0.0.1:${BRIDGE_METRICS_PORT:-9701}/metrics
  Send a build from a second terminal:
    npm run enqueue -- --repo <http(s) git url> --sha <commit sha> --branch <branch>
  Ctrl-C stops everything.

INFO

set +e
wait -n "${pids[@]}"
status=$?
say "a process exited (status $status); stopping the rest"
exit "$status"
