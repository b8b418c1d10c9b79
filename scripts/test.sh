#!/usr/bin/env bash
# `npm test`: installs what is missing, checks format, lint and types, starts real Redis and Kafka on loopback,
# runs every test (unit and end to end), and stops the services it started.
set -euo pipefail
SAY_PREFIX=test
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_deps
ensure_built
# The board test drives Debian's Chromium through playwright-core (no browser download).
command -v chromium >/dev/null || apt_install chromium
# The deployment test validates docker-compose.yml with Debian's compose implementation (no Docker engine needed).
command -v docker-compose >/dev/null || apt_install docker-compose
# The git interop test serves repositories through stock web servers: nginx + fcgiwrap (Debian's), not started here.
{ command -v nginx >/dev/null && command -v fcgiwrap >/dev/null; } || apt_install_no_start nginx-light fcgiwrap
# The alerting test evaluates the shipped rules in a real Prometheus (Debian's), started by the test itself.
command -v prometheus >/dev/null || apt_install_no_start prometheus
# The hostile suite's test hosts live in a network namespace it makes (ip netns, veth).
command -v ip >/dev/null || apt_install iproute2
say "biome (format + lint)"
npx biome ci .
say "tsc (types)"
npx tsc --noEmit -p .

was_running="$(scripts/services.sh status)"
local_env="$(scripts/services.sh up)"
eval "$local_env"
if ! grep -q 'kafka: running' <<<"$was_running" || ! grep -q 'redis: running' <<<"$was_running"; then
  trap 'scripts/services.sh down' EXIT
fi
export CI_RUNNER_TEST_CACHE_DIR="${CI_RUNNER_TEST_CACHE_DIR:-$ROOT/.cache/test}"

files=("$@")
if [ "${#files[@]}" = 0 ]; then files=(test/unit/*.test.ts test/e2e/*.test.ts); fi
say "node --test ${files[*]}"
node --import tsx --test --test-concurrency=1 --test-timeout="${TEST_TIMEOUT_MS:-600000}" "${files[@]}"
