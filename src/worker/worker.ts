import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import { createArtefactStore } from '../delivery/artefactStore.js';
import { replicationCheck } from '../delivery/awaitReplication.js';
import { connectPublisher } from '../delivery/kafka.js';
import { ensureTopics } from '../delivery/kafkaTopics.js';
import { Placement } from '../delivery/placement.js';
import { type BuildJobData, connectRedis, RETENTION_SECONDS } from '../delivery/queue.js';
import { redisAccess } from '../delivery/redisAccess.js';
import { reportLimits } from '../delivery/reportLimits.js';
import { ReportOutbox } from '../delivery/reportOutbox.js';
import { ReportStore } from '../delivery/reportStore.js';
import { Supersession } from '../delivery/supersession.js';
import type { Config } from '../ops/config.js';
import { toError } from '../ops/errors.js';
import { type Closable, Teardown } from '../ops/lifecycle.js';
import type { Logger } from '../ops/logger.js';
import { startMetricsServer } from '../ops/metricsServer.js';
import { ensureToolchain } from '../pipeline/toolchain.js';
import { prepareSandbox, sandboxRequest } from '../sandbox/sandboxHost.js';
import { BuildEvents } from './buildEvents.js';
import { buildProcessor } from './buildProcessor.js';
import { startBuildWorkers } from './buildWorkers.js';
import { FlakeHistory } from './flakeHistory.js';
import { startArtefactExpiry, watchSupersededBuilds } from './periodicTasks.js';
import { startReaping } from './reapOrphans.js';
import { reportFailedJob } from './reportFailedJob.js';
import type { RunningBuild } from './supersededBuilds.js';
import { createWorkerMetrics } from './workerMetrics.js';

const OUTBOX_FLUSH_MS = 5_000;
const REAP_MS = 15_000;

/** A running worker process part; metricsUrl is where /metrics, /healthz and /readyz answer. */
export interface RunningWorker extends Closable {
  metricsUrl: string;
}

// Hosts a BullMQ worker that runs the stage pipeline per job. Reports are recorded in Redis before the job completes
// and published from there, so a crash or a Kafka outage loses none and a re-run never publishes a second verdict.
// close() stops taking jobs, lets running builds finish within the drain grace period, then hands them back.
export async function startWorker(config: Readonly<Config>, logger: Logger): Promise<RunningWorker> {
  const teardown = new Teardown(logger);
  try {
    // The builds' tools and sandbox. Fails closed: a worker that cannot sandbox builds takes none (unless SANDBOX=off).
    const toolchain = await ensureToolchain(config.pythonBin, config.cacheDir, logger, {
      path: config.hostPath,
      inherited: config.buildEnv,
    });
    const sandbox = await prepareSandbox(sandboxRequest(config.sandbox, config.hostPath, toolchain), logger);
    const stopReaping = await startReaping(
      config.workDir,
      logger,
      sandbox.enabled ? sandbox.cgroups : undefined,
      REAP_MS,
    );
    teardown.add('reaper', async () => stopReaping());

    // Kafka, where reports go.
    await ensureTopics(config.kafka, [config.topicBuildReports], logger);
    const publisher = await connectPublisher(config.kafka, 'ci-runner-worker', logger);
    teardown.add('producer', () => publisher.close());

    // Redis: one connection for the queue and the stores, one for the BullMQ workers' blocking commands.
    const redis = connectRedis(config.redis);
    teardown.add('redis', async () => void redis.disconnect());
    await redisAccess(redis, config.redis);
    const workerRedis = connectRedis(config.redis);
    teardown.add('worker redis', async () => void workerRedis.disconnect());

    // Reports: recorded in Redis, then published from the outbox.
    const limits = await reportLimits(
      config.kafka,
      config.topicBuildReports,
      config.reportMaxEntries,
      logger,
    );
    const store = new ReportStore(redis, config.queueName, RETENTION_SECONDS, limits);
    const events = new BuildEvents(logger);
    const outbox = new ReportOutbox(store, publisher, config.topicBuildReports, logger, (commitSha) =>
      events.emit('reportPublished', { commitSha }),
    );
    outbox.start(OUTBOX_FLUSH_MS);
    teardown.add('outbox', async () => {
      await outbox.close();
      await outbox.flush();
    });
    const queue = new Queue<BuildJobData>(config.queueName, { connection: redis });
    teardown.add('queue', () => queue.close());

    // What every build shares.
    const placement = new Placement(redis, config.queueName);
    const supersession = new Supersession(redis, config.queueName, RETENTION_SECONDS);
    const holder = `${config.workerHostId} ${hostname()} ${process.pid} ${randomUUID()}`;
    const running = new Map<string, RunningBuild>();
    const artefacts = createArtefactStore(config.artefactStore, config.artefactDir);
    const placed = { placement, store, supersession, queue, holder, running, logger };
    const parts = {
      config,
      events,
      toolchain,
      sandbox,
      store,
      flakes: new FlakeHistory(redis, config.queueName),
      artefacts,
      supersession,
      replicated: replicationCheck(config.redis, redis, logger),
      logger,
      running,
      draining: { value: false },
      placed,
    };

    // Housekeeping on timers: old artefacts expire; running builds a newer commit superseded are canceled.
    startArtefactExpiry({ artefacts, redis, config, logger, teardown });
    watchSupersededBuilds({ running, supersession, logger, teardown });

    // The builds themselves.
    startBuildWorkers({
      config,
      connection: workerRedis,
      build: buildProcessor(parts),
      placed,
      running,
      draining: parts.draining,
      finished: () => void outbox.flush(),
      failed: (job, error) =>
        void reportFailedJob(store, placement, job, error, logger)
          .then(() => outbox.flush())
          .catch((thrown) =>
            logger.error(
              { err: toError(thrown), jobId: job.id },
              'could not record the report of a failed job',
            ),
          ),
      logger,
      teardown,
    });

    // Metrics, health and readiness.
    const server = await startMetricsServer({
      host: config.metricsHost,
      port: config.workerMetricsPort,
      registry: createWorkerMetrics(events, store, queue),
      logger,
      ready: async () => ({
        redis: redis.status === 'ready' && workerRedis.status === 'ready',
        kafka: publisher.connected(),
      }),
    });
    teardown.add('metrics server', () => server.close());
    logger.info(
      { queue: config.queueName, concurrency: config.workerConcurrency, metrics: server.url },
      'worker started',
    );
    return { metricsUrl: server.url, close: () => teardown.close() };
  } catch (error) {
    await teardown.close();
    throw error;
  }
}
