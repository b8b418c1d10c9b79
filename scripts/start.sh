#!/usr/bin/env bash
# `npm start`: runs the bridge, one worker and the board. When REDIS_URL / KAFKA_BROKERS are not set, starts a local Redis /
# Kafka first (scripts/services.sh) and stops them again on exit. Ctrl-C, SIGTERM and SIGHUP (the terminal closed, with or
# without a pipe after `npm start`) stop everything it started.
set -euo pipefail
SAY_PREFIX=start
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_deps
ensure_built
command -v curl >/dev/null || apt_install curl
# A reader of our output that went away (`npm start | head`) must not stop this script half-way: writes fail instead.
trap '' PIPE
started=()
pids=()
# Stops what this script started, once: the processes (each drains: it finishes or hands back its builds), then the
# services. Robust to a terminal that is gone and a pipe whose reader died: nothing it writes may stop it half-way.
stop() {
  trap - EXIT
  set +e
  # A second signal (another Ctrl-C, systemd's or docker's second SIGTERM) exits the processes at once; the services
  # still stop after them.
  trap 'say "second signal: exiting now" 2>/dev/null; for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done' INT TERM HUP
  if [ "${#pids[@]}" -gt 0 ]; then
    say "stopping bridge, worker and board (they finish or hand back running builds; Ctrl-C again to exit at once)" 2>/dev/null
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    # `wait` returns early when a signal arrives: wait until every process is gone.
    for pid in "${pids[@]}"; do
      while kill -0 "$pid" 2>/dev/null; do wait "$pid" 2>/dev/null || sleep 0.1; done
    done
  fi
  for service in "${started[@]}"; do scripts/services.sh "$service-down" >/dev/null 2>&1; done
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap 'stop; exit 129' HUP
trap stop EXIT

if [ -z "${REDIS_URL:-}" ] || [ -z "${KAFKA_BROKERS:-}" ]; then
  say "REDIS_URL or KAFKA_BROKERS not set: starting local services, OPEN on loopback (no passwords; for a first try)"
  say "an authenticated set-up: CI_RUNNER_SECURE=1 scripts/services.sh up, and the roles in docs/security.md"
  # Only what this script starts is stopped with it: not a Redis or Kafka already running (another `npm start`'s).
  running="$(scripts/services.sh status)"
  if [ -z "${REDIS_URL:-}" ]; then
    grep -q 'redis: running' <<<"$running" || started+=(redis)
    scripts/services.sh redis-up
    export REDIS_URL="$(scripts/services.sh env | sed -n 's/^export REDIS_URL=//p')"
  fi
  if [ -z "${KAFKA_BROKERS:-}" ]; then
    grep -q 'kafka: running' <<<"$running" || started+=(kafka)
    scripts/services.sh kafka-up
    export KAFKA_BROKERS="$(scripts/services.sh env | sed -n 's/^export KAFKA_BROKERS=//p')"
  fi
fi
if [ -t 1 ] && [ -z "${LOG_PRETTY:-}" ]; then export LOG_PRETTY=true; fi

# One Ctrl-C drains (each process gets one SIGTERM and finishes or hands back its builds); a second one exits at once
# (each process gets a second SIGTERM, which it takes as "exit now").
# Each process runs in its own session, so the terminal's Ctrl-C reaches only this script, which passes it on once.
setsid node dist/src/bridge/main.js &
pids+=($!)
setsid node dist/src/worker/main.js &
pids+=($!)
if [ -z "${BOARD_USERNAME:-}" ]; then
  # No board credentials configured: serve it on loopback only, which the board allows without authentication.
  export BOARD_HOST=127.0.0.1 BOARD_ALLOW_NO_AUTH=true
fi
setsid node dist/src/board/main.js &
pids+=($!)

# Ready only when the worker can take a build (it prepares the runner's Python tools first: ~30 s on a first start)
# and the bridge consumes.
ready() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }
waited=0
# (With a metrics port of 0 the ports are random: nothing to poll, so no readiness wait.)
until [ "${WORKER_METRICS_PORT:-9700}" = 0 ] || [ "${BRIDGE_METRICS_PORT:-9701}" = 0 ] || { ready "http://127.0.0.1:${WORKER_METRICS_PORT:-9700}/readyz" && ready "http://127.0.0.1:${BRIDGE_METRICS_PORT:-9701}/readyz"; }; do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { say "a process exited while starting; see its log above"; exit 1; }
  done
  if [ $((waited % 10)) = 0 ]; then
    say "preparing (${waited} s): the worker installs the runner's Python tools on a first start; waiting for /readyz"
  fi
  sleep 1
  waited=$((waited + 1))
done

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
  Ctrl-C drains and stops everything (a second Ctrl-C exits at once).

INFO

set +e
wait -n "${pids[@]}"
status=$?
say "a process exited (status $status); stopping the rest"
exit "$status"
