#!/usr/bin/env bash
# `npm run build`: compiles src/ to dist/ (what `npm start`, the bridge, the worker, the board and `ci-runner` run),
# with the proto and Python files beside it. Serialised by a lock, so two callers never write dist/ at once.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
mkdir -p dist
exec 9>dist/.lock
flock 9
npx tsc -p tsconfig.build.json
rm -rf dist/proto dist/python
cp -r proto python dist/
touch dist/.built
