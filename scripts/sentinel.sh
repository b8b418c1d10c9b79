#!/usr/bin/env bash
# A Redis primary, one replica and three Redis Sentinels on 127.0.0.1 (Debian's redis-server and redis-sentinel),
# for testing failover: REDIS_SENTINELS names the sentinels, which name the primary `ci-runner`.
# Usage: scripts/sentinel.sh up|down|env|primary     (primary: prints the current primary's port)
set -euo pipefail

SAY_PREFIX=sentinel
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
STATE="${CI_RUNNER_SERVICES_DIR:-$ROOT/.services}/sentinel"
PRIMARY_PORT="${CI_RUNNER_SENTINEL_PRIMARY_PORT:-16480}"
REPLICA_PORT=$((PRIMARY_PORT + 1))
SENTINEL_PORTS=($((PRIMARY_PORT + 10)) $((PRIMARY_PORT + 11)) $((PRIMARY_PORT + 12)))
NAME=ci-runner

ping() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

redis_node() {
  local port="$1"
  shift
  mkdir -p "$STATE/$port"
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$STATE/$port" \
    --pidfile "$STATE/$port/redis.pid" --logfile "$STATE/$port/redis.log" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction --save '' "$@"
}

sentinel_node() {
  local port="$1"
  mkdir -p "$STATE/$port"
  # A sentinel rewrites its configuration file: each gets its own, written afresh.
  cat >"$STATE/$port/sentinel.conf" <<CONF
bind 127.0.0.1
port $port
daemonize yes
pidfile $STATE/$port/sentinel.pid
logfile $STATE/$port/sentinel.log
dir $STATE/$port
sentinel monitor $NAME 127.0.0.1 $PRIMARY_PORT 2
sentinel down-after-milliseconds $NAME 1000
sentinel failover-timeout $NAME 5000
sentinel parallel-syncs $NAME 1
CONF
  redis-sentinel "$STATE/$port/sentinel.conf"
}

up() {
  command -v redis-server >/dev/null || apt_install redis-server
  command -v redis-sentinel >/dev/null || apt_install_no_start redis-sentinel
  down
  rm -rf "$STATE"
  say "starting a Redis primary (:$PRIMARY_PORT), a replica (:$REPLICA_PORT) and sentinels (:${SENTINEL_PORTS[*]})"
  redis_node "$PRIMARY_PORT"
  redis_node "$REPLICA_PORT" --replicaof 127.0.0.1 "$PRIMARY_PORT"
  for port in "${SENTINEL_PORTS[@]}"; do sentinel_node "$port"; done
  for _ in $(seq 1 200); do
    if ping "$PRIMARY_PORT" && ping "$REPLICA_PORT" &&
      redis-cli -h 127.0.0.1 -p "$REPLICA_PORT" info replication | grep -q 'master_link_status:up' &&
      redis-cli -h 127.0.0.1 -p "${SENTINEL_PORTS[0]}" sentinel replicas "$NAME" 2>/dev/null | grep -q "$REPLICA_PORT"; then
      say "primary, replica and sentinels ready"
      return
    fi
    sleep 0.1
  done
  die "the Sentinel set did not come up; see $STATE/*/"
}

down() {
  kill_pidfiles "$STATE"/*/sentinel.pid "$STATE"/*/redis.pid
}

print_env() {
  local list
  list="$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]}")"
  echo "export REDIS_SENTINELS=${list%,}"
  echo "export REDIS_SENTINEL_NAME=$NAME"
}

case "${1:-}" in
  up) up; print_env ;;
  down) down ;;
  env) print_env ;;
  primary) redis-cli -h 127.0.0.1 -p "${SENTINEL_PORTS[0]}" sentinel get-master-addr-by-name "$NAME" | tail -1 ;;
  *) die "usage: $0 up|down|env|primary" ;;
esac
