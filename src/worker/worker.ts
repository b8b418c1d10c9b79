import { type Job, Worker } from 'bullmq';
import type { Config } from '../config.js';
import type { BuildReport } from '../contracts.js';
import { isRetriable, toError } from '../errors.js';
import { connectPublisher, ensureTopics } from '../kafka.js';
import { type Closable, Teardown } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import { runPipeline } from '../pipeline.js';
import { type BuildJobData, connectRedis, outboxKey } from '../queue.js';
import { erroredReport } from '../report.js';
import { ensureToolchain, type Toolchain } from '../stages/toolchain.js';
import { ReportOutbox } from './outbox.js';

const OUTBOX_FLUSH_MS = 5_000;

function processor(config: Readonly<Config>, toolchain: Toolchain, outbox: ReportOutbox, logger: Logger) {
  return async (job: Job<BuildJobData, BuildReport>): Promise<BuildReport> => {
    const attempt = job.attemptsMade + 1;
    const attempts = job.opts.attempts ?? 1;
    const input = { ...job.data, attempt };
    const log = logger.child({ jobId: job.id, commitSha: job.data.commitSha, attempt });
    const started = performance.now();
    log.info('build started');
    let report: BuildReport;
    try {
      report = await runPipeline(input, {
        toolchain,
        artefactDir: config.artefactDir,
        cacheDir: config.cacheDir,
        workDir: config.workDir,
        pytestMark: config.pytestMark,
        gitCredentials: config.gitCredentials,
        buildEnv: config.buildEnv,
        limits: config.limits,
        artefactMaxBytes: config.artefactMaxBytes,
        logger: log,
        signal: new AbortController().signal,
        onLog: (line) => void job.log(line).catch(() => undefined),
        onStage: (stage, result) =>
          void job.updateProgress({ stage, outcome: result?.outcome ?? 'running' }).catch(() => undefined),
      });
    } catch (thrown) {
      const error = toError(thrown);
      if (isRetriable(error) && attempt < attempts) {
        log.warn({ err: error }, 'build hit an infrastructure fault; will retry');
        throw error;
      }
      log.error({ err: error }, 'build errored');
      report = erroredReport(input, error, Math.round(performance.now() - started));
    }
    await outbox.put(report);
    log.info({ status: report.status, durationMs: report.durationMs }, 'build finished');
    return report;
  };
}

// Hosts a BullMQ worker that runs the stage pipeline per job; finished reports go through the durable outbox.
export async function startWorker(config: Readonly<Config>, logger: Logger): Promise<Closable> {
  const teardown = new Teardown(logger);
  try {
    const toolchain = await ensureToolchain(config.pythonBin, config.cacheDir, logger);
    await ensureTopics(config.kafkaBrokers, [config.topicBuildReports], logger);
    const publisher = await connectPublisher(config.kafkaBrokers, 'ci-runner-worker', logger);
    teardown.add('producer', () => publisher.close());
    const redis = connectRedis(config.redisUrl);
    teardown.add('redis', async () => void redis.disconnect());
    const outbox = new ReportOutbox(
      redis,
      outboxKey(config.queueName),
      publisher,
      config.topicBuildReports,
      logger,
    );
    outbox.start(OUTBOX_FLUSH_MS);
    teardown.add('outbox', () => outbox.close());
    const workerRedis = connectRedis(config.redisUrl);
    teardown.add('worker redis', async () => void workerRedis.disconnect());
    const worker = new Worker<BuildJobData, BuildReport>(
      config.queueName,
      processor(config, toolchain, outbox, logger),
      {
        connection: workerRedis,
        concurrency: config.workerConcurrency,
      },
    );
    worker.on('completed', () => void outbox.flush());
    worker.on('error', (error) => logger.error({ err: error }, 'worker error'));
    teardown.add('worker', () => worker.close());
    logger.info({ queue: config.queueName, concurrency: config.workerConcurrency }, 'worker started');
    return teardown;
  } catch (error) {
    await teardown.close();
    throw error;
  }
}
