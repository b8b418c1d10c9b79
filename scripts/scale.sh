#!/usr/bin/env bash
# `npm run scale`: the many-hosts simulation on real projects (bench/scale.ts) against local Redis, Kafka and S3,
# started here when not running, and stopped again afterwards.
set -euo pipefail
SAY_PREFIX=scale
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_deps
was_running="$(scripts/services.sh status)"
eval "$(scripts/services.sh up)"
stop=()
if ! grep -q 'kafka: running' <<<"$was_running" || ! grep -q 'redis: running' <<<"$was_running"; then
  stop+=("scripts/services.sh down")
fi
s3_pid="${CI_RUNNER_SERVICES_DIR:-$ROOT/.services}/s3/s3proxy.pid"
if ! { [ -f "$s3_pid" ] && kill -0 "$(cat "$s3_pid")" 2>/dev/null; }; then stop+=("scripts/s3.sh down"); fi
# Stops only what this run started.
cleanup() { for step in "${stop[@]}"; do $step; done; }
trap cleanup EXIT
eval "$(scripts/s3.sh up)"
node --import tsx bench/scale.ts
