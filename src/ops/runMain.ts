import { ConfigError, toError } from './errors.js';

// Runs a process entry point: a configuration error prints one clear line; anything else its stack. Exit 1 both.
export function runMain(start: () => Promise<void>): void {
  start().catch((thrown: unknown) => {
    const error = toError(thrown);
    if (error instanceof ConfigError)
      process.stderr.write(`ci-runner: configuration error: ${error.message}\n`);
    else process.stderr.write(`ci-runner: failed to start: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
}
