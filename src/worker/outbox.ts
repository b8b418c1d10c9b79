import type { Redis } from 'ioredis';
import { type BuildReport, encodeBuildReport } from '../contracts.js';
import { toError } from '../errors.js';
import type { Publisher } from '../kafka.js';
import type { Logger } from '../logger.js';

// Deletes the entry only if it still holds what was published, so a newer report is never dropped unsent.
const DELETE_IF_SAME = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

/** Reports waiting to be published, kept in Redis so a worker crash or a Kafka outage loses none. */
export class ReportOutbox {
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly publisher: Publisher,
    private readonly topic: string,
    private readonly logger: Logger,
  ) {}

  // Stores a finished build's report durably before its job is marked complete.
  async put(report: BuildReport): Promise<void> {
    await this.redis.hset(this.key, report.commitSha, encodeBuildReport(report));
  }

  // Publishes every stored report keyed by its sha and removes it once Kafka acknowledged it.
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

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
  }

  private async publishAll(): Promise<void> {
    const pending = await this.redis.hgetallBuffer(this.key);
    for (const [sha, bytes] of Object.entries(pending)) {
      try {
        await this.publisher.send(this.topic, [{ key: sha, value: bytes }]);
        await this.redis.eval(DELETE_IF_SAME, 1, this.key, sha, bytes);
        this.logger.info({ commitSha: sha, topic: this.topic }, 'report published');
      } catch (thrown) {
        this.logger.warn({ err: toError(thrown), commitSha: sha }, 'report not published yet; will retry');
        return;
      }
    }
  }
}
