#!/usr/bin/env bash
# Runs a command with REDIS_URL and KAFKA_BROKERS pointing at the local services unless they are already set.
# With --compiled first, compiles dist/ first when the sources changed since it was built.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ "${1:-}" = --compiled ]; then
  shift
  ensure_built
fi
: "${REDIS_URL:=redis://127.0.0.1:${CI_RUNNER_REDIS_PORT:-16379}}"
: "${KAFKA_BROKERS:=127.0.0.1:${CI_RUNNER_KAFKA_PORT:-19092}}"
export REDIS_URL KAFKA_BROKERS
exec "$@"
