import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type Job, Queue, UnrecoverableError, WaitingError } from 'bullmq';
import { type ArtefactStore, createArtefactStore } from '../delivery/artefactStore.js';
import { replicationCheck } from '../delivery/awaitReplication.js';
import type { BuildReport } from '../delivery/contracts.js';
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
import { isRetriable, toError } from '../ops/errors.js';
import { type Closable, Teardown } from '../ops/lifecycle.js';
import type { Logger } from '../ops/logger.js';
import { startMetricsServer } from '../ops/metricsServer.js';
import { boardArtefactLink } from '../pipeline/artefactLocation.js';
import { erroredReport, supersededReport } from '../pipeline/report.js';
import { configuredOptions, runPipeline } from '../pipeline/runPipeline.js';
import { ensureToolchain, type Toolchain } from '../pipeline/toolchain.js';
import { type NoSandbox, prepareSandbox, type SandboxHost, sandboxRequest } from '../sandbox/sandboxHost.js';
import { BuildEvents } from './buildEvents.js';
import { startBuildWorkers } from './buildWorkers.js';
import { EXPIRY_INTERVAL_MS, expireArtefacts } from './expireArtefacts.js';
import { finishSuperseded } from './finishSuperseded.js';
import { FlakeHistory } from './flakeHistory.js';
import { jobLog } from './jobLog.js';
import { ClaimLost, type PlacedParts } from './placedCopies.js';
import { startReaping } from './reapOrphans.js';
import { keepArtefact, onHost, withFlakeHistory } from './reportAdditions.js';
import { reportFailedJob } from './reportFailedJob.js';
import { settleReport } from './settleReport.js';
import { cancelSupersededBuilds, type RunningBuild, Superseded } from './supersededBuilds.js';
import { createWorkerMetrics } from './workerMetrics.js';

const OUTBOX_FLUSH_MS = 5_000;
const REAP_MS = 15_000;
/** How often a worker looks whether a build it runs was superseded (CANCEL_SUPERSEDED=running). */
const SUPERSEDED_POLL_MS = 1_000;

interface Shared {
  config: Readonly<Config>;
  events: BuildEvents;
  toolchain: Toolchain;
  sandbox: SandboxHost | NoSandbox;
  store: ReportStore;
  flakes: FlakeHistory;
  /** Where finished artefacts go (ARTEFACT_STORE). */
  artefacts: ArtefactStore;
  supersession: Supersession;
  /** Resolves once the reports recorded so far would survive a Redis failover (a no-op without Sentinel). */
  replicated: () => Promise<void>;
  logger: Logger;
  /** The builds running now, by job id; aborted to hand them back on shutdown, or when superseded. */
  running: Map<string, RunningBuild>;
  draining: { value: boolean };
  /** Cache-aware placement: the warm hosts of repositories, and the claims of placed builds' copies. */
  placed: PlacedParts;
}

// Builds one commit (any copy of its job): the stage pipeline, then the report recorded and published.
function buildProcessor(shared: Shared) {
  const { config, events, toolchain, sandbox, store, flakes, logger, running, draining } = shared;
  return async (job: Job<BuildJobData, BuildReport>, token?: string): Promise<BuildReport> => {
    const attempt = job.attemptsMade + 1;
    const log = logger.child({ jobId: job.id, commitSha: job.data.commitSha, attempt });
    const stored = await store.get(job.data.commitSha);
    if (stored && stored.status !== 'ERRORED') {
      // A build of this sha already finished (this job ran before a crash or a lost lock): its report stands.
      log.info({ status: stored.status }, 'already built; keeping the stored report');
      return stored;
    }
    const input = { ...job.data, attempt };
    const [supersededBy] = await shared.supersession.supersededBy([job.data.commitSha]);
    if (supersededBy) {
      // The bridge reported it already (it reports before removing the job): nothing more to say.
      if (stored?.supersededBy === supersededBy) throw new UnrecoverableError(`ERRORED: ${stored.error}`);
      return finishSuperseded(shared, job, supersededReport(input, supersededBy, 0), stored, 'before_start');
    }
    const controller = new AbortController();
    const say = jobLog(job, { maxBytes: config.jobLogMaxBytes });
    running.set(String(job.id), { commitSha: job.data.commitSha, controller });
    const started = performance.now();
    log.info('build started');
    let report: BuildReport;
    /** Which of the host's caches the build found its repository in. */
    const cached: Partial<Record<'git' | 'env', boolean>> = {};
    try {
      report = await runPipeline(input, {
        toolchain,
        sandbox,
        ...configuredOptions(config),
        logger: log,
        signal: controller.signal,
        onLog: say,
        onStage: (event) => {
          const { stage } = event;
          void job.updateProgress({ stage, outcome: event.outcome ?? 'running' }).catch(() => undefined);
          if (event.outcome === undefined) {
            log.info({ stage }, 'stage started');
            return;
          }
          log.info({ stage, outcome: event.outcome, durationMs: event.durationMs }, 'stage finished');
          events.emit('stageFinished', { stage, outcome: event.outcome, durationMs: event.durationMs });
          if (event.egressRefused) events.emit('egressRefused', { count: event.egressRefused });
          if (event.cache) {
            events.emit('cache', event.cache);
            cached[event.cache.cache] = event.cache.hit;
          }
        },
      });
      report = await keepArtefact(shared.artefacts, report, log, say, controller.signal);
    } catch (thrown) {
      const error = toError(thrown);
      const reason: unknown = controller.signal.reason;
      if (controller.signal.aborted && reason instanceof Superseded) {
        const canceled = supersededReport(input, reason.by, Math.round(performance.now() - started));
        return finishSuperseded(shared, job, canceled, stored, 'running');
      }
      if (controller.signal.aborted && reason instanceof ClaimLost) {
        // Another copy builds it: this one ends without a report (the shared job waits for that copy's).
        log.warn(reason.message);
        throw new Error(reason.message);
      }
      if (draining.value && controller.signal.aborted && token) {
        // Shutting down: hand the build back without spending an attempt, at the head of the queue (BullMQ takes
        // waiting jobs from the end moveToWait pushes to), so it resumes ahead of new work.
        log.warn('worker shutting down; build handed back to the head of the queue');
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (isRetriable(error) && attempt < (job.opts.attempts ?? 1)) {
        log.warn({ err: error }, 'build hit an infrastructure fault; will retry');
        events.emit('retry', { reason: error.message });
        throw error;
      }
      log.error({ err: error }, 'build errored');
      report = erroredReport(input, error, Math.round(performance.now() - started));
    } finally {
      running.delete(String(job.id));
    }
    report = onHost(report, config.workerHostId, cached, say);
    if (config.placement.mode === 'cache' && cached.git !== undefined) {
      await shared.placed.placement
        .recordWarm(job.data.repositoryUrl, config.workerHostId)
        .catch((error) => log.warn({ err: toError(error) }, 'could not record this host as warm'));
    }
    report = await withFlakeHistory(report, flakes, log);
    for (const { nodeId, flips } of report.flakyTests) {
      const history = `${flips} build(s) of this repository in the last 30 days`;
      say(`flaky: ${nodeId} failed, then passed on a re-run (it did so in ${history})`);
    }
    if (report.flakyTests.length) events.emit('flakyTests', { count: report.flakyTests.length });
    const standing = await settleReport(store, report, stored, log, shared.artefacts);
    // Before anything publishes it or the job completes: a failover must not lose a verdict already on Kafka.
    await shared.replicated();
    events.emit('buildFinished', { status: report.status, durationMs: report.durationMs });
    log.info({ status: standing.status, durationMs: standing.durationMs }, 'build finished');
    if (standing.artefactUrl) {
      say(`artefact on the board: ${boardArtefactLink(job.data.commitSha)}`);
    }
    if (standing.status === 'ERRORED') {
      // Reported (the outbox has it) and shown to on-call as a failed job they can retry from the board.
      throw new UnrecoverableError(`ERRORED: ${standing.error}`);
    }
    return standing;
  };
}

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
    const toolchain = await ensureToolchain(config.pythonBin, config.cacheDir, logger, {
      path: config.hostPath,
      inherited: config.buildEnv,
    });
    // Fails closed: a worker that cannot sandbox builds does not take any (unless SANDBOX=off).
    const sandbox = await prepareSandbox(sandboxRequest(config.sandbox, config.hostPath, toolchain), logger);
    const cgroups = sandbox.enabled ? sandbox.cgroups : undefined;
    const stopReaping = await startReaping(config.workDir, logger, cgroups, REAP_MS);
    teardown.add('reaper', async () => stopReaping());
    await ensureTopics(config.kafka, [config.topicBuildReports], logger);
    const publisher = await connectPublisher(config.kafka, 'ci-runner-worker', logger);
    teardown.add('producer', () => publisher.close());
    const redis = connectRedis(config.redis);
    teardown.add('redis', async () => void redis.disconnect());
    await redisAccess(redis, config.redis);
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
    const workerRedis = connectRedis(config.redis);
    teardown.add('worker redis', async () => void workerRedis.disconnect());
    const queue = new Queue<BuildJobData>(config.queueName, { connection: redis });
    teardown.add('queue', () => queue.close());
    const registry = createWorkerMetrics(events, store, queue);
    const placement = new Placement(redis, config.queueName);
    const supersession = new Supersession(redis, config.queueName, RETENTION_SECONDS);
    const holder = `${config.workerHostId} ${hostname()} ${process.pid} ${randomUUID()}`;
    const running = new Map<string, RunningBuild>();
    const shared: Shared = {
      config,
      events,
      toolchain,
      sandbox,
      store,
      flakes: new FlakeHistory(redis, config.queueName),
      artefacts: createArtefactStore(config.artefactStore, config.artefactDir),
      supersession,
      replicated: replicationCheck(config.redis, redis, logger),
      logger,
      running,
      draining: { value: false },
      placed: { placement, store, supersession, queue, holder, running, logger },
    };
    if (config.artefactRetentionDays > 0) {
      const expire = () =>
        void expireArtefacts(shared.artefacts, redis, config.queueName, config.artefactRetentionDays, logger);
      expire();
      const expiry = setInterval(expire, EXPIRY_INTERVAL_MS);
      expiry.unref();
      teardown.add('artefact expiry', async () => clearInterval(expiry));
    }
    const watcher = setInterval(
      () =>
        void cancelSupersededBuilds(shared.running, shared.supersession).catch((error) =>
          logger.debug({ err: toError(error) }, 'could not look for superseded builds; will retry'),
        ),
      SUPERSEDED_POLL_MS,
    );
    watcher.unref();
    teardown.add('superseded watcher', async () => clearInterval(watcher));
    startBuildWorkers({
      config,
      connection: workerRedis,
      build: buildProcessor(shared),
      placed: shared.placed,
      running: shared.running,
      draining: shared.draining,
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
    const server = await startMetricsServer({
      host: config.metricsHost,
      port: config.workerMetricsPort,
      registry,
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
