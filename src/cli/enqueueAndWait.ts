import { randomUUID } from 'node:crypto';
import { type BuildReport, decodeBuildReport, encodeCommitResult } from '../delivery/contracts.js';
import { connectPublisher, type KafkaAt, type Subscription, subscribe } from '../delivery/kafka.js';
import { ensureTopics } from '../delivery/kafkaTopics.js';
import type { Logger } from '../ops/logger.js';

export interface EnqueueRequest {
  repositoryUrl: string;
  commitSha: string;
  branchName: string;
  taskId: string;
  status: string;
  timeoutMs: number;
}

/** How an enqueued CommitResult ended: its report, the bridge's reason for dead-lettering it, or nothing in time. */
export type EnqueueOutcome =
  | { kind: 'report'; report: BuildReport }
  | { kind: 'dead-lettered'; reason: string }
  | { kind: 'timeout'; message: string };

// Sends one CommitResult (keyed by sha) and resolves with the first BuildReport for that sha, or with the bridge's
// reason as soon as the dead-letter topic gets a record with that key, or with a timeout.
export async function enqueueAndWait(
  brokers: KafkaAt,
  topics: { commitResults: string; buildReports: string; deadLetter: string },
  request: EnqueueRequest,
  logger: Logger,
): Promise<EnqueueOutcome> {
  await ensureTopics(brokers, [topics.commitResults, topics.buildReports, topics.deadLetter], logger);
  let settle: (outcome: EnqueueOutcome) => void = () => undefined;
  const settled = new Promise<EnqueueOutcome>((resolve) => {
    settle = resolve;
  });
  const ours = (key: Buffer | null) => key?.toString('utf8') === request.commitSha;
  const watch = (topic: string, onOurs: (value: Buffer, headers: Record<string, Buffer>) => void) =>
    subscribe({
      brokers,
      clientId: 'ci-runner-enqueue',
      groupId: `ci-runner-enqueue-${randomUUID()}`,
      topic,
      startAt: 'now',
      logger,
      onMessage: async (message) => {
        if (ours(message.key) && message.value) onOurs(message.value, message.headers);
      },
    });
  const subscriptions: Subscription[] = [];
  const publisher = await connectPublisher(brokers, 'ci-runner-enqueue', logger);
  let timer: NodeJS.Timeout | undefined;
  try {
    subscriptions.push(
      await watch(topics.buildReports, (value) =>
        settle({ kind: 'report', report: decodeBuildReport(value) }),
      ),
      await watch(topics.deadLetter, (_, headers) =>
        settle({
          kind: 'dead-lettered',
          reason: headers['x-ci-runner-error']?.toString('utf8') ?? '(no reason given)',
        }),
      ),
    );
    await publisher.send(topics.commitResults, [
      {
        key: request.commitSha,
        value: encodeCommitResult({
          taskId: request.taskId,
          commitSha: request.commitSha,
          branchName: request.branchName,
          status: request.status,
          repositoryUrl: request.repositoryUrl,
        }),
      },
    ]);
    timer = setTimeout(
      () =>
        settle({
          kind: 'timeout',
          message:
            `no BuildReport for ${request.commitSha} on "${topics.buildReports}" within ${request.timeoutMs / 1000} s ` +
            '(is a bridge and a worker running? npm start runs both; npm run status shows the queue)',
        }),
      request.timeoutMs,
    );
    return await settled;
  } finally {
    clearTimeout(timer);
    await Promise.all([publisher.close(), ...subscriptions.map((s) => s.close())]);
  }
}
