import type { Logger } from './logger.js';

/** Anything long-lived: close() is idempotent and releases what it holds. */
export interface Closable {
  close(): Promise<void>;
}

// Collects teardown steps as resources are acquired and runs them in reverse, once, logging (not throwing) failures.
export class Teardown implements Closable {
  private readonly steps: Array<[string, () => Promise<void>]> = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly logger: Logger) {}

  add(name: string, step: () => Promise<void>): void {
    this.steps.push([name, step]);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const [name, step] of this.steps.reverse()) {
        try {
          await step();
        } catch (error) {
          this.logger.warn({ err: error, step: name }, 'teardown step failed');
        }
      }
    })();
    return this.closing;
  }
}

/** How long a shutdown may take before the process exits anyway (say, with Redis or Kafka unreachable). */
export const SHUTDOWN_DEADLINE_MS = 30_000;

// SIGTERM/SIGINT close the part gracefully; a second signal exits at once, and so does a shutdown still running
// after deadlineMs (exit 1, with a line saying so): whatever it still held is recovered by the others (a build's lock
// expires and another worker takes it).
export function closeOnSignals(part: Closable, logger: Logger, deadlineMs = SHUTDOWN_DEADLINE_MS): void {
  let signalled = false;
  const handler = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal, deadlineMs }, 'shutting down');
    setTimeout(() => {
      logger.error(
        { deadlineMs },
        'shutdown deadline passed (Redis or Kafka unreachable?); exiting with work unfinished, other processes will take it over',
      );
      process.exit(1);
    }, deadlineMs).unref();
    part.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
