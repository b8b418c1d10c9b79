#!/usr/bin/env bash
# `npm run test:node24`: the unit tests and one end-to-end build (`ci-runner build` of a small Python project, every
# stage in the sandbox) on Node 24 LTS, the runtime ci-runner ships for (the Dockerfile's). Node 24 comes from the npm
# registry's `node` package into .cache/node24; the machine's own Node (which `npm test` and CI use) is left as it is.
set -euo pipefail
SAY_PREFIX=node24
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

NODE24_VERSION=24.21.0
ensure_deps
dir="$ROOT/.cache/node24"
node24="$dir/node_modules/node/bin/node"
if [ ! -x "$node24" ] || [ "$("$node24" --version 2>/dev/null)" != "v$NODE24_VERSION" ]; then
  say "installing node@$NODE24_VERSION from the npm registry into .cache/node24"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node@$NODE24_VERSION" >/dev/null
fi
[ "$("$node24" --version)" = "v$NODE24_VERSION" ] || die "node@$NODE24_VERSION did not install a working node"
export PATH="$(dirname "$node24"):$PATH"
say "$(node --version): the unit tests"
ensure_built
node --import tsx --test test/unit/*.test.ts

say "$(node --version): one end-to-end build (ci-runner build of a small project)"
project="$(mktemp -d)"
trap 'rm -rf "$project"' EXIT
mkdir -p "$project/calc" "$project/tests"
printf '[project]\nname = "calc"\nversion = "0.1.0"\n\n[tool.pytest.ini_options]\nmarkers = ["fast: quick tests"]\n' \
  >"$project/pyproject.toml"
printf 'def add(a, b):\n    return a + b\n' >"$project/calc/__init__.py"
printf 'import pytest\n\nfrom calc import add\n\n\n@pytest.mark.fast\ndef test_add():\n    assert add(1, 2) == 3\n' \
  >"$project/tests/test_calc.py"
git -C "$project" init -q -b main
git -C "$project" -c user.name=ci -c user.email=ci@localhost add -A
git -C "$project" -c user.name=ci -c user.email=ci@localhost commit -q -m "a small project"
export CACHE_DIR="${CACHE_DIR:-$ROOT/.cache/test}" ARTEFACT_DIR="$project.artefacts" WORK_DIR="$project.work"
set +e
out="$(bin/ci-runner build "$project" 2>&1)"
code=$?
set -e
rm -rf "$project.artefacts" "$project.work"
printf '%s\n' "$out" | tail -15
[ "$code" = 0 ] && grep -q 'PASSED' <<<"$out" || die "the build on $(node --version) did not pass (exit $code)"
grep -q '1 test(s) passed' <<<"$out" || die "the build on $(node --version) did not run the project's test"
say "Node $(node --version): unit tests and an end-to-end build passed"
