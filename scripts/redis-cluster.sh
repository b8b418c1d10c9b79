#!/usr/bin/env bash
# A Redis Cluster of three primaries on 127.0.0.1 (Debian's redis-server in cluster mode, joined by redis-cli), for
# testing REDIS_CLUSTER_NODES.
# Usage: scripts/redis-cluster.sh up|down|env      Data and logs live in .services/redis-cluster (git-ignored).
set -euo pipefail

SAY_PREFIX=redis-cluster
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="${CI_RUNNER_SERVICES_DIR:-$ROOT/.services}/redis-cluster"
FIRST_PORT="${CI_RUNNER_CLUSTER_PORT:-16500}"
PORTS=("$FIRST_PORT" $((FIRST_PORT + 1)) $((FIRST_PORT + 2)))

ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

up() {
  command -v redis-server >/dev/null || apt_install redis-server
  down
  rm -rf "$STATE"
  say "starting a Redis Cluster of three primaries (:${PORTS[*]})"
  local port
  for port in "${PORTS[@]}"; do
    mkdir -p "$STATE/$port"
    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$STATE/$port" \
      --pidfile "$STATE/$port/redis.pid" --logfile "$STATE/$port/redis.log" \
      --cluster-enabled yes --cluster-config-file "$STATE/$port/nodes.conf" --cluster-node-timeout 2000 \
      --appendonly yes --maxmemory-policy noeviction --save ''
  done
  for port in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do ping "$port" && break; sleep 0.1; done
    ping "$port" || die "Redis on :$port did not start; see $STATE/$port/redis.log"
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${PORTS[@]}") --cluster-replicas 0 --cluster-yes \
    >"$STATE/create.log" 2>&1 || die "the cluster was not created; see $STATE/create.log"
  for _ in $(seq 1 200); do
    if redis-cli -h 127.0.0.1 -p "$FIRST_PORT" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
      say "cluster ready"
      return
    fi
    sleep 0.1
  done
  die "the cluster did not reach state ok; see $STATE/*/redis.log"
}

down() {
  kill_pidfiles "$STATE"/*/redis.pid
}

print_env() {
  local list
  list="$(printf '127.0.0.1:%s,' "${PORTS[@]}")"
  echo "export REDIS_CLUSTER_NODES=${list%,}"
}

case "${1:-}" in
  up) up; print_env ;;
  down) down ;;
  env) print_env ;;
  *) die "usage: $0 up|down|env" ;;
esac
