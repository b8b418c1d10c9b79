import { randomUUID } from 'node:crypto';
import { type BuildReport, decodeBuildReport, encodeCommitResult } from './contracts.js';
import { connectPublisher, ensureTopics, subscribe } from './kafka.js';
import type { Logger } from './logger.js';

export interface EnqueueRequest {
  repositoryUrl: string;
  commitSha: string;
  branchName: string;
  taskId: string;
  status: string;
  timeoutMs: number;
}

// Sends one CommitResult (keyed by sha) and resolves with the first BuildReport for that sha, or rejects on timeout.
export async function enqueueAndWait(
  brokers: string[],
  topics: { commitResults: string; buildReports: string },
  request: EnqueueRequest,
  logger: Logger,
): Promise<BuildReport> {
  await ensureTopics(brokers, [topics.commitResults, topics.buildReports], logger);
  let deliver: (report: BuildReport) => void = () => undefined;
  const arrived = new Promise<BuildReport>((resolve) => {
    deliver = resolve;
  });
  const subscription = await subscribe({
    brokers,
    clientId: 'ci-runner-enqueue',
    groupId: `ci-runner-enqueue-${randomUUID()}`,
    topic: topics.buildReports,
    startAt: 'now',
    logger,
    onMessage: async (message) => {
      if (message.key?.toString('utf8') !== request.commitSha || !message.value) return;
      deliver(decodeBuildReport(message.value));
    },
  });
  const publisher = await connectPublisher(brokers, 'ci-runner-enqueue', logger);
  let timer: NodeJS.Timeout | undefined;
  try {
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
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `no BuildReport for ${request.commitSha} on "${topics.buildReports}" within ${request.timeoutMs / 1000} s ` +
                '(is a bridge and a worker running? npm start runs both)',
            ),
          ),
        request.timeoutMs,
      );
    });
    return await Promise.race([arrived, timeout]);
  } finally {
    clearTimeout(timer);
    await Promise.all([publisher.close(), subscription.close()]);
  }
}
