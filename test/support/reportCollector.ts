import { randomUUID } from 'node:crypto';
import { type BuildReport, decodeBuildReport } from '../../src/contracts.js';
import { type Subscription, subscribe } from '../../src/kafka.js';
import type { Logger } from '../../src/logger.js';

/** Plays the orchestrator: collects every BuildReport on a topic, keyed as the runner keyed it. */
export interface ReportCollector {
  waitFor(commitSha: string, timeoutMs?: number): Promise<BuildReport>;
  /** Every report received so far for a sha, with the Kafka key it carried. */
  received(commitSha: string): Array<{ key: string; report: BuildReport }>;
  close(): Promise<void>;
}

// Subscribes to the reports topic from its beginning in a fresh consumer group.
export async function collectReports(
  brokers: string[],
  topic: string,
  logger: Logger,
): Promise<ReportCollector> {
  const bySha = new Map<string, Array<{ key: string; report: BuildReport }>>();
  const waiters = new Map<string, Array<(report: BuildReport) => void>>();
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
      list.push({ key, report });
      bySha.set(report.commitSha, list);
      for (const wake of waiters.get(report.commitSha) ?? []) wake(report);
      waiters.delete(report.commitSha);
    },
  });
  return {
    waitFor(commitSha, timeoutMs = 240_000) {
      const first = bySha.get(commitSha)?.[0];
      if (first) return Promise.resolve(first.report);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no report for ${commitSha} in ${timeoutMs} ms`)),
          timeoutMs,
        );
        const list = waiters.get(commitSha) ?? [];
        list.push((report) => {
          clearTimeout(timer);
          resolve(report);
        });
        waiters.set(commitSha, list);
      });
    },
    received: (commitSha) => bySha.get(commitSha) ?? [],
    close: () => subscription.close(),
  };
}
