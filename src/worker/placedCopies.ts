import { DelayedError, type Job, type Queue, UnrecoverableError, WaitingError } from 'bullmq';
import type { BuildReport } from '../delivery/contracts.js';
import { CLAIM_MS, type Placement } from '../delivery/placement.js';
import { type BuildJobData, buildJobId } from '../delivery/queue.js';
import type { ReportStore } from '../delivery/reportStore.js';
import type { Supersession } from '../delivery/supersession.js';
import { toError } from '../ops/errors.js';
import type { Logger } from '../ops/logger.js';
import type { RunningBuild } from './supersededBuilds.js';

/** How often the canonical job of a build its warm host's copy runs looks again whether that copy finished. */
const RECHECK_MS = 5_000;
/** How long a finished copy's claim says so (the canonical job completes with its report well within this). */
const DONE_KEEP_MS = 24 * 3_600_000;

/** What the copies of a placed build share in a worker process. */
export interface PlacedParts {
  placement: Placement;
  store: ReportStore;
  supersession: Supersession;
  /** The shared queue, where every build's canonical job is. */
  queue: Queue<BuildJobData>;
  /** This process as a claim holder (unique per process; each copy of a job claims as `<holder> <copy>`). */
  holder: string;
  /** The builds this process runs, by job id: one whose claim lapsed is aborted. */
  running: Map<string, RunningBuild>;
  logger: Logger;
}

/** The abort reason of a placed build whose claim could not be renewed: another copy may be building it now. */
export class ClaimLost extends Error {
  constructor(readonly holder: string) {
    super(`the claim of ${holder} on this build lapsed: another copy may build it`);
  }
}

type Build = (job: Job<BuildJobData, BuildReport>, token?: string) => Promise<BuildReport>;

// Runs `work` (the build of job `jobId`) while keeping `holder`'s claim from lapsing; a claim that cannot be renewed
// (it lapsed, or another copy holds it now) aborts the build, so two copies never both finish it.
async function whileClaimed<T>(
  parts: PlacedParts,
  commitSha: string,
  holder: string,
  jobId: string,
  work: () => Promise<T>,
): Promise<T> {
  const renew = setInterval(
    () =>
      void parts.placement.renew(commitSha, holder).then(
        (held) => {
          if (held) return;
          parts.logger.warn({ commitSha, holder }, 'claim on a placed build lapsed; stopping this copy');
          parts.running.get(jobId)?.controller.abort(new ClaimLost(holder));
        },
        () => undefined,
      ),
    CLAIM_MS / 4,
  );
  try {
    return await work();
  } finally {
    clearInterval(renew);
  }
}

// The canonical job of a placed build: builds it unless the copy on the warm host claimed it first. While that copy
// runs, the job waits delayed (holding no slot) and looks again; once it finished, the job ends with its report.
export async function runCanonical(
  parts: PlacedParts,
  job: Job<BuildJobData, BuildReport>,
  token: string | undefined,
  build: Build,
): Promise<BuildReport> {
  const { commitSha } = job.data;
  // Its own holder: the host's copy may run in this very process (another slot), and must not be taken for this one.
  const holder = `${parts.holder} shared`;
  const claim = await parts.placement.claim(commitSha, holder);
  if (claim.kind === 'running' && claim.holder !== holder) {
    await job.moveToDelayed(Date.now() + RECHECK_MS, token);
    throw new DelayedError();
  }
  if (claim.kind === 'done') {
    const report = await parts.store.get(commitSha);
    await parts.placement.forget(commitSha);
    if (report?.status === 'ERRORED') throw new UnrecoverableError(`ERRORED: ${report.error}`);
    if (report) {
      void job.log(`built on host ${report.workerHost} (where its caches are)`).catch(() => undefined);
      return report;
    }
  }
  try {
    return await whileClaimed(parts, commitSha, holder, String(job.id), () => build(job, token));
  } finally {
    await parts.placement.forget(commitSha).catch(() => undefined);
  }
}

// The copy of a placed build in its warm host's own queue: builds it if no other copy claimed it, then lets the
// canonical job complete with the report at once. A fault other than a verdict gives the build back to the canonical
// job (which retries it with backoff); so does a shutdown. Returns the report when this copy built it.
export async function runHostCopy(
  parts: PlacedParts,
  job: Job<BuildJobData, BuildReport>,
  token: string | undefined,
  build: Build,
): Promise<BuildReport | undefined> {
  const { commitSha } = job.data;
  const log = parts.logger.child({ jobId: job.id, commitSha, copy: 'host' });
  const [supersededBy] = await parts.supersession.supersededBy([commitSha]);
  const stored = await parts.store.get(commitSha);
  if (supersededBy || (stored && stored.status !== 'ERRORED')) return undefined;
  // The build's own job already ended (failed for good, completed, or removed): a copy must not build it again.
  const canonical = await parts.queue.getJob(buildJobId(commitSha));
  const state = canonical ? await canonical.getState() : 'missing';
  if (state === 'completed' || state === 'failed' || state === 'missing') {
    log.info({ state }, "the build's own job has ended; this copy does not run");
    return undefined;
  }
  const holder = `${parts.holder} host`;
  const claim = await parts.placement.claim(commitSha, holder);
  if (claim.kind === 'done' || claim.holder !== holder) {
    log.debug({ claim }, 'another copy has this build');
    return undefined;
  }
  let report: BuildReport | undefined;
  let finished = false;
  try {
    report = await whileClaimed(parts, commitSha, holder, String(job.id), () => build(job, token));
    finished = true;
  } catch (thrown) {
    // An ERRORED build has its report recorded: a verdict like any other, which the canonical job ends with.
    if (thrown instanceof UnrecoverableError) finished = true;
    else if (thrown instanceof WaitingError) {
      await parts.placement.release(commitSha, holder);
      await promoteCanonical(parts, commitSha);
      throw thrown;
    } else
      log.warn({ err: toError(thrown) }, 'build hit a fault on its warm host; the shared queue takes it');
  }
  if (finished) await parts.placement.finish(commitSha, holder, DONE_KEEP_MS);
  else await parts.placement.release(commitSha, holder);
  await promoteCanonical(parts, commitSha);
  return report;
}

// The canonical job waits delayed while the host's copy runs: it is due now.
async function promoteCanonical(parts: PlacedParts, commitSha: string): Promise<void> {
  const job = await parts.queue.getJob(buildJobId(commitSha));
  if (job && (await job.isDelayed())) await job.promote().catch(() => undefined);
}
