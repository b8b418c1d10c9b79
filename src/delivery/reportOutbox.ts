import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import { decodeBuildReport, encodeBuildReport } from './contracts.js';
import { fitReport } from './fitReport.js';
import { isTooLarge, type Publisher } from './kafka.js';
import { buildJobId } from './queue.js';
import type { ReportStore } from './reportStore.js';

/** How long a publication claim holds if its owner dies mid-send (longer than a send's own retries). */
const CLAIM_MS = 60_000;
/** Sends failing one after another (not for their size) before a flush stops: Kafka is likely down. */
const FAILURES_BEFORE_PAUSE = 3;

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
    const state = { failedInARow: 0 };
    try {
      for await (const page of this.store.pending()) {
        await this.publishPage(page, only, state);
        if (state.failedInARow >= FAILURES_BEFORE_PAUSE) return;
      }
    } catch (thrown) {
      this.logger.warn({ err: toError(thrown) }, 'outbox unreadable; will retry');
    }
  }

  private async publishPage(
    page: Array<[string, Buffer]>,
    only: Set<string> | undefined,
    state: { failedInARow: number },
  ): Promise<void> {
    for (const [sha, bytes] of page) {
      if (only && !only.has(sha)) continue;
      // Kafka down: every send would wait out its retries; the next flush tries again.
      if (state.failedInARow >= FAILURES_BEFORE_PAUSE) return;
      let claimed = false;
      // Kept while the send lasts: a slow send must not let another publisher send a newer entry before this one.
      const renewal = setInterval(
        () => void this.store.renewClaim(sha, this.owner, CLAIM_MS).catch(() => undefined),
        CLAIM_MS / 3,
      );
      try {
        // Published since it was read, or another worker publishing it right now: leave it.
        claimed = await this.store.claim(sha, bytes, this.owner, CLAIM_MS);
        if (!claimed) continue;
        await this.send(sha, bytes);
        state.failedInARow = 0;
      } catch (thrown) {
        state.failedInARow += 1;
        this.logger.warn({ err: toError(thrown), commitSha: sha }, 'report not published yet; will retry');
      } finally {
        clearInterval(renewal);
        if (claimed) await this.store.release(sha, this.owner).catch(() => undefined);
      }
    }
  }

  // Sends one report; one Kafka refuses as too large goes out reduced (halved until Kafka takes it: lists cut,
  // fields 1-6 intact) in its place, stored and published, so no commit waits forever for a report that cannot be
  // sent. A refusal for size is never counted as Kafka being down.
  private async send(sha: string, bytes: Buffer): Promise<void> {
    let sent = bytes;
    for (;;) {
      try {
        await this.publisher.send(this.topic, [{ key: sha, value: sent }]);
        break;
      } catch (thrown) {
        if (!isTooLarge(thrown)) throw thrown;
        const limits = { maxEntries: Number.MAX_SAFE_INTEGER, maxBytes: Math.floor(sent.length / 2) };
        const smaller = encodeBuildReport(fitReport(decodeBuildReport(sent), limits));
        if (smaller.length >= sent.length)
          throw new Error(`a report of ${sent.length} bytes cannot be reduced`);
        this.logger.warn(
          { commitSha: sha, bytes: sent.length, reduced: smaller.length },
          'Kafka refused the report as too large: publishing it reduced',
        );
        // Changed meanwhile (a newer report of the sha): the next flush sends that one.
        if (!(await this.store.replace(sha, sent, smaller))) return;
        sent = smaller;
      }
    }
    await this.store.acknowledge(sha, sent);
    this.onPublished(sha);
    this.logger.info({ commitSha: sha, jobId: buildJobId(sha), topic: this.topic }, 'report published');
  }
}
