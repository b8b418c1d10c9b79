import { toError } from '../ops/errors.js';
import { EXIT, EXIT_CODES_HELP, exitCodeOf } from './exitCodes.js';
import { BUILD_USAGE, ENQUEUE_USAGE, SERVE_USAGE, STATUS_USAGE } from './usage.js';

const USAGE = `usage: ci-runner <command> [options] [--debug]   (ci-runner <command> --help for its options)

commands:
  build     run the build stages locally on a repository URL or a local path, print the report
  enqueue   send a CommitResult to Kafka and wait for its BuildReport
  status    show the queue, connected workers and the latest builds
  serve     serve a local git repository over smart HTTP, to enqueue real builds of it

${BUILD_USAGE}

${ENQUEUE_USAGE}

${STATUS_USAGE}

${SERVE_USAGE}

--debug prints an error's stack trace as well.
${EXIT_CODES_HELP}`;

type Command = (argv: string[]) => Promise<number>;

// Each command's code (Kafka, Redis, the build stages) is loaded only when that command runs.
const COMMANDS: Record<string, { usage: string; load: () => Promise<Command> }> = {
  build: { usage: BUILD_USAGE, load: async () => (await import('./buildCommand.js')).buildCommand },
  enqueue: { usage: ENQUEUE_USAGE, load: async () => (await import('./enqueueCommand.js')).enqueueCommand },
  status: { usage: STATUS_USAGE, load: async () => (await import('./statusCommand.js')).statusCommand },
  serve: { usage: SERVE_USAGE, load: async () => (await import('./serveCommand.js')).serveCommand },
};

// Entry point of the `ci-runner` command: every error is one line (its stack too with --debug) and an exit code a
// script can rely on (see EXIT).
async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const debug = argv.includes('--debug');
  const [name, ...rest] = argv.filter((arg) => arg !== '--debug');
  const command = name ? COMMANDS[name] : undefined;
  if (!command) {
    const asked = name === '--help' || name === '-h' || name === 'help';
    if (asked) process.stdout.write(`${USAGE}\n`);
    else
      process.stderr.write(
        `ci-runner: ${name ? `unknown command "${name}"` : 'no command given'}; ci-runner --help lists them\n`,
      );
    return asked ? 0 : EXIT.USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await (await command.load())(rest);
  } catch (thrown) {
    const error = toError(thrown);
    process.stderr.write(`ci-runner ${name}: ${error.message}\n`);
    if (debug && error.stack) process.stderr.write(`${error.stack}\n`);
    return exitCodeOf(error);
  }
}

main().then(
  (code) => process.exit(code),
  (thrown: unknown) => {
    process.stderr.write(`ci-runner: ${toError(thrown).message}\n`);
    process.exit(EXIT.SOFTWARE);
  },
);
