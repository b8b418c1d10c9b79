import { replicationCheck } from '../delivery/awaitReplication.js';
import { connectPublisher, subscribe } from '../delivery/kafka.js';
import { connectAdmin } from '../delivery/kafkaAdmin.js';
import { ensureTopics } from '../delivery/kafkaTopics.js';
import { Placement } from '../delivery/placement.js';
import { createBuildQueue, RETENTION_SECONDS } from '../delivery/queue.js';
import { redisAccess } from '../delivery/redisAccess.js';
import { reportLimits } from '../delivery/reportLimits.js';
import { ReportOutbox } from '../delivery/reportOutbox.js';
import { ReportStore } from '../delivery/reportStore.js';
import { Supersession } from '../delivery/supersession.js';
import { compileBranchFilter } from '../ops/branchFilter.js';
import type { Config } from '../ops/config.js';
import { toError } from '../ops/errors.js';
import { type Closable, Teardown } from '../ops/lifecycle.js';
import type { Logger } from '../ops/logger.js';
import { startMetricsServer } from '../ops/metricsServer.js';
import { batchHandler } from './batchHandler.js';
import { createBridgeMetrics } from './bridgeMetrics.js';
import type { BridgeParts } from './bridgeParts.js';
import { checkDeadLetterLimit } from './checkDeadLetterLimit.js';
import { connectBridgeRedis } from './connectBridgeRedis.js';
import { AffinityQueues } from './placeBuilds.js';
import { sweepHostQueues } from './sweepHostQueues.js';

/** How often the bridge looks for retired hosts' own queues. */
const SWEEP_MS = 60_000;

/** A running bridge; metricsUrl is where /metrics, /healthz and /readyz answer. */
export interface RunningBridge extends Closable {
  metricsUrl: string;
}

// Turns CommitResult messages into build jobs: validate, skip non-SUCCESS, enqueue once per commit, then commit
// the offset; bad input goes to the dead-letter topic with its reason. It never crashes on input and waits out
// Redis or Kafka outages without committing.
export async function startBridge(config: Readonly<Config>, logger: Logger): Promise<RunningBridge> {
  const teardown = new Teardown(logger);
  const closing = { value: false };
  try {
    const redis = connectBridgeRedis(config.redis);
    teardown.add('redis', async () => void redis.disconnect());
    await redisAccess(redis, config.redis);
    const queue = createBuildQueue(config.queueName, redis, config.buildAttempts);
    teardown.add('queue', () => queue.close());
    const topics = [config.topicCommitResults, config.topicBuildReports, config.topicDeadLetter];
    await ensureTopics(config.kafka, topics, logger);
    const deadLetters = await connectPublisher(config.kafka, 'ci-runner-bridge', logger);
    teardown.add('dead-letter producer', () => deadLetters.close());
    const deadLetterLimit = await checkDeadLetterLimit(config, logger);
    const admin = await connectAdmin(config.kafka, logger);
    teardown.add('admin', () => admin.close());
    const metrics = createBridgeMetrics(admin, config.kafkaGroupId, config.topicCommitResults, queue);
    const limits = await reportLimits(
      config.kafka,
      config.topicBuildReports,
      config.reportMaxEntries,
      logger,
    );
    const store = new ReportStore(redis, config.queueName, RETENTION_SECONDS, limits);
    // Publishes the reports of the builds it cancels as superseded at once; the workers' outboxes publish any it
    // could not (they publish every waiting report).
    const outbox = new ReportOutbox(store, deadLetters, config.topicBuildReports, logger);
    teardown.add('outbox', () => outbox.close());
    const placement = new Placement(redis, config.queueName);
    const affinity = new AffinityQueues(config.queueName, redis, placement);
    teardown.add('host queues', () => affinity.close());
    const sweep = setInterval(
      () =>
        void sweepHostQueues(placement, config.queueName, redis, logger).catch((error) =>
          logger.warn({ err: toError(error) }, 'could not sweep retired hosts’ queues; will retry'),
        ),
      SWEEP_MS,
    );
    sweep.unref();
    teardown.add('host queue sweep', async () => clearInterval(sweep));
    const parts: BridgeParts = {
      config,
      logger,
      queue,
      store,
      outbox,
      supersession: new Supersession(redis, config.queueName, RETENTION_SECONDS),
      placement,
      affinity,
      inSupersedeBranches: compileBranchFilter(config.supersede.branches, 'CANCEL_SUPERSEDED_BRANCHES'),
      deadLetters: { publisher: deadLetters, topic: config.topicDeadLetter, maxBytes: deadLetterLimit },
      closing,
      count: metrics.message,
      replicated: replicationCheck(config.redis, redis, logger),
      superseded: metrics.superseded,
      placed: metrics.placed,
      backlog: { waiting: 0, readAt: 0, enqueuedSince: 0 },
    };
    const subscription = await subscribe({
      brokers: config.kafka,
      clientId: 'ci-runner-bridge',
      groupId: config.kafkaGroupId,
      topic: config.topicCommitResults,
      startAt: 'earliest',
      logger,
      onBatch: batchHandler(parts),
    });
    teardown.add('consumer', () => subscription.close());
    teardown.add('stop retrying', async () => {
      closing.value = true;
    });
    const server = await startMetricsServer({
      host: config.metricsHost,
      port: config.bridgeMetricsPort,
      registry: metrics.registry,
      logger,
      ready: async () => ({ redis: redis.status === 'ready', kafka: deadLetters.connected() }),
    });
    teardown.add('metrics server', () => server.close());
    logger.info(
      { topic: config.topicCommitResults, queue: config.queueName, metrics: server.url },
      'bridge started',
    );
    return { metricsUrl: server.url, close: () => teardown.close() };
  } catch (error) {
    await teardown.close();
    throw error;
  }
}
