import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import type { Publisher } from './kafka.js';
import { buildJobId } from './queue.js';
import type { ReportStore } from './reportStore.js';

/** How long a publication claim holds if its owner dies mid-send (longer than a send's own retries). */
const CLAIM_MS = 60_000;

/** Publishes the reports the store holds for Kafka, so a worker crash or a Kafka outage loses none. */
export class ReportOutbox {
  /** Names this process in publication claims. */
  private readonly owner = `${hostname()}:${process.pid}:${randomUUID()}`;
  private flushing: Promise<void> | undefined;
  private readonly partial = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ReportStore,
    private readonly publisher: Publisher,
    private readonly topic: string,
    private readonly logger: Logger,
    private readonly onPublished: (commitSha: string) => void = () => undefined,
  ) {}

  // Publishes every waiting report keyed by its sha and acknowledges it once Kafka has it.
  flush(): Promise<void> {
    this.flushing ??= this.publishAll().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  // Flushes now and then every intervalMs, so reports left by a crash or an outage go out without a restart.
  start(intervalMs: number): void {
    void this.flush();
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  // Publishes only these shas' waiting reports (what this process recorded), leaving the rest to the workers.
  flushOnly(commitShas: string[]): Promise<void> {
    const flushing = this.publishAll(new Set(commitShas)).finally(() => this.partial.delete(flushing));
    this.partial.add(flushing);
    return flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([this.flushing, ...this.partial]);
  }

  private async publishAll(only?: Set<string>): Promise<void> {
    let pending: Record<string, Buffer>;
    try {
      pending = await this.store.pending();
    } catch (thrown) {
      this.logger.warn({ err: toError(thrown) }, 'outbox unreadable; will retry');
      return;
    }
    for (const [sha, bytes] of Object.entries(pending)) {
      if (only && !only.has(sha)) continue;
      let claimed = false;
      try {
        // Published since it was read, or another worker publishing it right now: leave it.
        claimed = await this.store.claim(sha, bytes, this.owner, CLAIM_MS);
        if (!claimed) continue;
        await this.publisher.send(this.topic, [{ key: sha, value: bytes }]);
        await this.store.acknowledge(sha, bytes);
        this.onPublished(sha);
        this.logger.info({ commitSha: sha, jobId: buildJobId(sha), topic: this.topic }, 'report published');
      } catch (thrown) {
        this.logger.warn({ err: toError(thrown), commitSha: sha }, 'report not published yet; will retry');
        return;
      } finally {
        if (claimed) await this.store.release(sha, this.owner).catch(() => undefined);
      }
    }
  }
}
