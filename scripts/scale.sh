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
if ! grep -q 'kafka: running' <<<"$was_running" || ! grep -q 'redis: running' <<<"$was_running"; then
  trap 'scripts/services.sh down; scripts/s3.sh down' EXIT
else
  trap 'scripts/s3.sh down' EXIT
fi
eval "$(scripts/s3.sh up)"
node --import tsx bench/scale.ts
