import { EXIT_CODES_HELP } from './exitCodes.js';

// Each command's --help, apart from the commands so that `ci-runner <command> --help` loads none of their code.

export const BUILD_USAGE = `usage: ci-runner build <repo-url-or-local-path> [--sha S] [--branch B] [--json] [--verbose]
Runs the build stages locally, without Kafka or Redis, and prints the report.
  --sha S      commit to build (default: the branch tip; for a local path, HEAD)
  --branch B   branch the commit is on (default: a local path's current branch)
  --json       print the report as JSON instead of a summary
  --verbose    under each failure, its traceback and output too, and each formatter finding's diff
Caches go to $XDG_CACHE_HOME/ci-runner (~/.cache/ci-runner) and artefacts to
$XDG_DATA_HOME/ci-runner/artefacts (~/.local/share/ci-runner/artefacts) unless CACHE_DIR / ARTEFACT_DIR say otherwise.
${EXIT_CODES_HELP}`;

export const ENQUEUE_USAGE = `usage: ci-runner enqueue --sha <40-hex sha> --branch <name> [--repo <url>] [--task <id>]
                         [--status SUCCESS] [--timeout <seconds>] [--json] [--verbose]
Produces a CommitResult to Kafka (KAFKA_BROKERS) and prints the BuildReport when it arrives; answers at once with
the bridge's reason when the bridge dead-letters it. --verbose adds each failure's traceback and output.
${EXIT_CODES_HELP}`;

export const STATUS_USAGE = `usage: ci-runner status [--json]
Shows the builds queue (REDIS_URL, QUEUE_NAME): jobs by state, connected workers and the latest builds.`;

export const SERVE_USAGE = `usage: ci-runner serve <local-repository-path> [--port N] [--host ADDRESS]
Serves a local git repository (a working copy or a bare one) over smart HTTP, read-only, so that
\`npm run enqueue -- --repo <printed URL> ...\` can send a real build of it. Runs until interrupted.
  --port N        port to listen on (default: a free one)
  --host ADDRESS  address to listen on (default 127.0.0.1; workers elsewhere need an address they can reach)
Exit status: 0 stopped by a signal, 64 bad arguments, 69 the address cannot be listened on.`;
