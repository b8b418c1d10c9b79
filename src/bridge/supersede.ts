import { type BuildJobData, buildJobId } from '../delivery/queue.js';
import { supersededReport } from '../pipeline/report.js';
import type { BridgeParts } from './bridgeParts.js';

/** What a batch's announcements do to the builds of their branches. */
export interface SupersessionPlan {
  /** Builds of the batch (by index) not to run, each with the newer sha that supersedes it. */
  superseded: Map<number, string>;
  /** Builds enqueued earlier that a commit of this batch supersedes: canceled once the batch is enqueued. */
  cancel: Array<{ previous: BuildJobData; by: string }>;
}

/** The job states in which a build has not started, so removing it from the queue cancels it. */
const NOT_STARTED = new Set(['waiting', 'delayed', 'prioritized', 'paused', 'waiting-children']);

// Moves each build's branch tip (when CANCEL_SUPERSEDED is on and the branch is in CANCEL_SUPERSEDED_BRANCHES): a
// build announced before its branch's tip is superseded on arrival; one that becomes the tip supersedes the tip before
// it, either here in the batch or already enqueued.
export async function planSupersession(
  parts: BridgeParts,
  builds: BuildJobData[],
): Promise<SupersessionPlan> {
  const plan: SupersessionPlan = { superseded: new Map(), cancel: [] };
  if (parts.config.supersede.mode === 'off') return plan;
  const grouped = [...builds.entries()].filter(([, data]) => parts.inSupersedeBranches(data.branchName));
  const standings = await parts.supersession.advance(grouped.map(([, data]) => data));
  const inBatch = new Map(builds.map((data, index) => [data.commitSha, index]));
  for (const [k, standing] of standings.entries()) {
    const [index, data] = grouped[k] as [number, BuildJobData];
    if (standing.kind === 'older') plan.superseded.set(index, standing.tip);
    if (standing.kind !== 'tip' || !standing.previous) continue;
    const previous = inBatch.get(standing.previous.commitSha);
    if (previous !== undefined && previous !== index) plan.superseded.set(previous, data.commitSha);
    else plan.cancel.push({ previous: standing.previous, by: data.commitSha });
  }
  return plan;
}

// Records the ERRORED "superseded by" report of a build that will not run (the outbox publishes it).
export async function reportSuperseded(parts: BridgeParts, data: BuildJobData, by: string): Promise<void> {
  await parts.store.record(supersededReport({ ...data, attempt: 0 }, by, 0));
  parts.logger.info({ commitSha: data.commitSha, supersededBy: by }, 'build superseded; not run');
}

// Cancels an enqueued build that a newer commit of its branch superseded. One that has not started is marked (so a
// worker that takes it up anyway does not build it), removed from the queue and reported; with
// CANCEL_SUPERSEDED=running, one running is marked so that the worker running it aborts it. A finished build, or one
// running under CANCEL_SUPERSEDED=waiting, is left alone. Returns what was done.
export async function cancelSuperseded(
  parts: BridgeParts,
  previous: BuildJobData,
  by: string,
): Promise<'removed' | 'marked' | undefined> {
  const job = await parts.queue.getJob(buildJobId(previous.commitSha));
  let state = job ? await job.getState() : 'missing';
  if (job?.data.placedOn && NOT_STARTED.has(state)) {
    // A placed build's canonical job waits while the copy on its warm host runs (or ran) it.
    const claim = await parts.placement.read(previous.commitSha);
    if (claim?.kind === 'done') return undefined;
    if (claim?.kind === 'running') state = 'active';
  }
  if (state === 'missing' || NOT_STARTED.has(state)) await parts.supersession.mark(previous.commitSha, by);
  if (!job) {
    // Removed by an earlier attempt at this that stopped before reporting, or not enqueued yet by another
    // partition's batch: reported unless it has a report.
    if (await parts.store.get(previous.commitSha)) return undefined;
    await reportSuperseded(parts, previous, by);
    return 'removed';
  }
  if (NOT_STARTED.has(state)) {
    // Reported before the job goes: a Redis blip or a crash between the two can leave a job that its worker will not
    // build (it reads the mark) but never a removed build without a report. A write that fails here fails the batch,
    // whose redelivery finishes the cancellation (the tip's previous is kept for that).
    await reportSuperseded(parts, job.data, by);
    try {
      // Fails while a worker holds the job's lock: it started meanwhile (and reads the mark before building).
      await job.remove();
      return 'removed';
    } catch {
      state = await job.getState();
    }
  }
  if (state !== 'active' || parts.config.supersede.mode !== 'running') return undefined;
  await parts.supersession.mark(previous.commitSha, by);
  parts.logger.info(
    { commitSha: previous.commitSha, supersededBy: by },
    'running build superseded; canceling it',
  );
  return 'marked';
}
