import { randomUUID } from 'node:crypto';
import { type BuildReport, decodeBuildReport } from '../../src/delivery/contracts.js';
import { type Subscription, subscribe } from '../../src/delivery/kafka.js';
import type { Logger } from '../../src/ops/logger.js';

export interface Received {
  key: string;
  bytes: Buffer;
  report: BuildReport;
}

/** Plays the orchestrator: collects every BuildReport on a topic, keyed as the runner keyed it. */
export interface ReportCollector {
  /** Resolves with the nth report (default the first) received for a sha. */
  waitFor(commitSha: string, timeoutMs?: number, nth?: number): Promise<BuildReport>;
  /** Every report received so far for a sha, with the Kafka key it carried. */
  received(commitSha: string): Received[];
  close(): Promise<void>;
}

// Subscribes to the reports topic from its beginning in a fresh consumer group.
export async function collectReports(
  brokers: string[],
  topic: string,
  logger: Logger,
): Promise<ReportCollector> {
  const bySha = new Map<string, Received[]>();
  // A waiter returns true once satisfied (it wanted the nth report and n have arrived).
  const waiters = new Map<string, Array<(count: number, report: BuildReport) => boolean>>();
  const subscription: Subscription = await subscribe({
    brokers,
    clientId: 'test-orchestrator',
    groupId: `test-orchestrator-${randomUUID()}`,
    topic,
    startAt: 'earliest',
    logger,
    onMessage: async (message) => {
      if (!message.value) return;
      const report = decodeBuildReport(message.value);
      const key = message.key?.toString('utf8') ?? '';
      const list = bySha.get(report.commitSha) ?? [];
      list.push({ key, bytes: Buffer.from(message.value), report });
      bySha.set(report.commitSha, list);
      const waiting = waiters.get(report.commitSha) ?? [];
      waiters.set(
        report.commitSha,
        waiting.filter((waiter) => !waiter(list.length, report)),
      );
    },
  });
  return {
    waitFor(commitSha, timeoutMs = 240_000, nth = 1) {
      const already = bySha.get(commitSha)?.[nth - 1];
      if (already) return Promise.resolve(already.report);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no report for ${commitSha} in ${timeoutMs} ms`)),
          timeoutMs,
        );
        const list = waiters.get(commitSha) ?? [];
        list.push((count, report) => {
          if (count < nth) return false;
          clearTimeout(timer);
          resolve(report);
          return true;
        });
        waiters.set(commitSha, list);
      });
    },
    received: (commitSha) => bySha.get(commitSha) ?? [],
    close: () => subscription.close(),
  };
}
