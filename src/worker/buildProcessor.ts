import { type Job, UnrecoverableError, WaitingError } from 'bullmq';
import type { ArtefactStore } from '../delivery/artefactStore.js';
import type { BuildReport } from '../delivery/contracts.js';
import type { BuildJobData } from '../delivery/queue.js';
import type { ReportStore } from '../delivery/reportStore.js';
import type { Supersession } from '../delivery/supersession.js';
import type { Config } from '../ops/config.js';
import { isRetriable, toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import { boardArtefactLink } from '../pipeline/artefactLocation.js';
import { erroredReport, supersededReport } from '../pipeline/report.js';
import { configuredOptions, runPipeline } from '../pipeline/runPipeline.js';
import type { Toolchain } from '../pipeline/toolchain.js';
import type { NoSandbox, SandboxHost } from '../sandbox/sandboxHost.js';
import type { BuildEvents } from './buildEvents.js';
import { finishSuperseded } from './finishSuperseded.js';
import type { FlakeHistory } from './flakeHistory.js';
import { jobLog } from './jobLog.js';
import { ClaimLost, type PlacedParts } from './placedCopies.js';
import { keepArtefact, onHost, withFlakeHistory } from './reportAdditions.js';
import { settleReport } from './settleReport.js';
import { type RunningBuild, Superseded } from './supersededBuilds.js';

/** What every build of a worker process shares: its connections, caches, sandbox and running builds. */
export interface WorkerParts {
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
export function buildProcessor(shared: WorkerParts) {
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
