import { runMain } from '../main.js';
import { BUILD_USAGE, buildCommand } from './buildCommand.js';
import { ENQUEUE_USAGE, enqueueCommand } from './enqueueCommand.js';
import { SERVE_USAGE, serveCommand } from './serveCommand.js';
import { STATUS_USAGE, statusCommand } from './statusCommand.js';

const USAGE = `usage: ci-runner <command> [options]   (ci-runner <command> --help for its options)

commands:
  build     run the build stages locally on a repository URL or a local path, print the report
  enqueue   send a CommitResult to Kafka and wait for its BuildReport
  status    show the queue, connected workers and the latest builds
  serve     serve a local git repository over smart HTTP, to enqueue real builds of it

${BUILD_USAGE}

${ENQUEUE_USAGE}

${STATUS_USAGE}

${SERVE_USAGE}`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  build: buildCommand,
  enqueue: enqueueCommand,
  status: statusCommand,
  serve: serveCommand,
};

// Entry point of the `ci-runner` command.
runMain(async () => {
  const [name, ...rest] = process.argv.slice(2);
  const command = name ? COMMANDS[name] : undefined;
  if (!command) {
    const asked = name === '--help' || name === '-h' || name === 'help';
    (asked ? process.stdout : process.stderr).write(`${USAGE}\n`);
    process.exit(asked ? 0 : 2);
  }
  process.exit(await command(rest));
});
