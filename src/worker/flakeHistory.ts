import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { BuildReport, FlakyTest } from '../delivery/contracts.js';

/** How long a flip is remembered. */
export const FLAKE_WINDOW_MS = 30 * 24 * 3600 * 1000;

const digest = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 24);

// Each repository's flaky tests in Redis: per test, a sorted set of the commits whose builds saw it fail and then
// pass on a re-run, scored by when; entries older than the window are dropped, and the key expires a window after
// the test was last seen flipping. A commit counts once, however often it is built.
export class FlakeHistory {
  constructor(
    private readonly redis: Redis,
    private readonly queueName: string,
  ) {}

  private key(repositoryUrl: string, nodeId: string): string {
    return `ci-runner:${this.queueName}:flaky:${digest(repositoryUrl)}:${digest(nodeId)}`;
  }

  /** Records a build's flaky tests and returns them with their flips in the window, this build's included. */
  async record(report: BuildReport, now = Date.now()): Promise<FlakyTest[]> {
    if (report.flakyTests.length === 0) return [];
    const multi = this.redis.multi();
    for (const { nodeId } of report.flakyTests) {
      const key = this.key(report.repositoryUrl, nodeId);
      multi
        .zadd(key, now, report.commitSha)
        .zremrangebyscore(key, '-inf', now - FLAKE_WINDOW_MS)
        .zcard(key)
        .pexpire(key, FLAKE_WINDOW_MS);
    }
    const replies = (await multi.exec()) ?? [];
    return report.flakyTests.map(({ nodeId, flips }, index) => {
      const [error, count] = replies[index * 4 + 2] ?? [];
      return { nodeId, flips: !error && typeof count === 'number' ? count : flips };
    });
  }
}
