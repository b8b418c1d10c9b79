import { toError } from '../errors.js';
import { BUILD_USAGE, buildCommand } from './buildCommand.js';
import { ENQUEUE_USAGE, enqueueCommand } from './enqueueCommand.js';
import { EXIT, EXIT_CODES_HELP, exitCodeOf } from './exitCodes.js';
import { SERVE_USAGE, serveCommand } from './serveCommand.js';
import { STATUS_USAGE, statusCommand } from './statusCommand.js';

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

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  build: buildCommand,
  enqueue: enqueueCommand,
  status: statusCommand,
  serve: serveCommand,
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
  try {
    return await command(rest);
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
