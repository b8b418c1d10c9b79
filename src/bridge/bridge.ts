import type { Config } from '../config.js';
import { encodeBuildReport } from '../contracts.js';
import { connectPublisher, ensureTopics, type IncomingMessage, subscribe } from '../kafka.js';
import { type Closable, Teardown } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import { BUILD_JOB_NAME, buildJobId, connectRedis, createBuildQueue, outboxKey } from '../queue.js';
import { decide } from './validate.js';

export interface Bridge extends Closable {}

// Turns CommitResult messages into build jobs: validate, skip non-SUCCESS, enqueue once per commit, then commit
// the offset; bad input goes to the dead-letter topic with its reason.
export async function startBridge(config: Readonly<Config>, logger: Logger): Promise<Bridge> {
  const teardown = new Teardown(logger);
  try {
    const redis = connectRedis(config.redisUrl);
    teardown.add('redis', async () => void redis.disconnect());
    const queue = createBuildQueue(config.queueName, redis, config.buildAttempts);
    teardown.add('queue', () => queue.close());
    await ensureTopics(
      config.kafkaBrokers,
      [config.topicCommitResults, config.topicBuildReports, config.topicDeadLetter],
      logger,
    );
    const deadLetters = await connectPublisher(config.kafkaBrokers, 'ci-runner-bridge', logger);
    teardown.add('dead-letter producer', () => deadLetters.close());

    const handle = async (message: IncomingMessage): Promise<void> => {
      const decision = decide(message.value, config.remoteRepo);
      const where = { partition: message.partition, offset: message.offset };
      if (decision.kind === 'skip') {
        logger.info({ ...where, reason: decision.reason }, 'skipped commit result');
        return;
      }
      if (decision.kind === 'reject') {
        logger.warn({ ...where, reason: decision.reason }, 'dead-lettered commit result');
        await deadLetters.send(config.topicDeadLetter, [
          {
            key: message.key?.toString('utf8') ?? '',
            value: message.value ?? Buffer.alloc(0),
            headers: {
              'x-ci-runner-error': decision.reason,
              'x-original-topic': message.topic,
              'x-original-partition': String(message.partition),
              'x-original-offset': message.offset,
            },
          },
        ]);
        return;
      }
      const jobId = buildJobId(decision.data.commitSha);
      const existing = await queue.getJob(jobId);
      if (existing) {
        const commitSha = decision.data.commitSha;
        if (existing.returnvalue && (await existing.isCompleted())) {
          // The build is done: publish its stored report again (same bytes, same key) instead of rebuilding.
          await redis.hset(outboxKey(config.queueName), commitSha, encodeBuildReport(existing.returnvalue));
          logger.info(
            { ...where, jobId, commitSha },
            'duplicate of a finished build: republishing its report',
          );
        } else {
          logger.info({ ...where, jobId, commitSha }, 'duplicate of a queued or running build');
        }
        return;
      }
      await queue.add(BUILD_JOB_NAME, decision.data, { jobId });
      logger.info(
        { ...where, jobId, commitSha: decision.data.commitSha, taskId: decision.data.taskId },
        'enqueued',
      );
    };

    const subscription = await subscribe({
      brokers: config.kafkaBrokers,
      clientId: 'ci-runner-bridge',
      groupId: config.kafkaGroupId,
      topic: config.topicCommitResults,
      startAt: 'earliest',
      logger,
      onMessage: handle,
    });
    teardown.add('consumer', () => subscription.close());
    logger.info({ topic: config.topicCommitResults, queue: config.queueName }, 'bridge started');
    return teardown;
  } catch (error) {
    await teardown.close();
    throw error;
  }
}
