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

// SIGTERM/SIGINT close the part gracefully; a second signal exits at once.
export function closeOnSignals(part: Closable, logger: Logger): void {
  let signalled = false;
  const handler = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'shutting down');
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
