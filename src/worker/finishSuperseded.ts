import { type Job, UnrecoverableError } from 'bullmq';
import type { ArtefactStore } from '../delivery/artefactStore.js';
import type { BuildReport } from '../delivery/contracts.js';
import type { BuildJobData } from '../delivery/queue.js';
import type { ReportStore } from '../delivery/reportStore.js';
import type { Logger } from '../ops/logger.js';
import type { BuildEvents } from './buildEvents.js';
import { settleReport } from './settleReport.js';

/** What finishing a superseded build needs of the worker. */
export interface SupersededParts {
  store: ReportStore;
  events: BuildEvents;
  logger: Logger;
  artefacts: ArtefactStore;
}

// Records the report of a build superseded by a newer commit of its branch (not run, or canceled while running: its
// process tree is gone with the sandbox) and fails the job without a retry, as for any ERRORED build.
export async function finishSuperseded(
  { store, events, logger, artefacts }: SupersededParts,
  job: Job<BuildJobData, BuildReport>,
  report: BuildReport,
  earlier: BuildReport | undefined,
  when: 'running' | 'before_start',
): Promise<never> {
  const log = logger.child({ jobId: job.id, commitSha: job.data.commitSha });
  // The bridge reported this cancellation already (it reports a waiting build before removing its job, and a worker
  // may have taken the job meanwhile): one report of it, not two.
  const current = await store.get(job.data.commitSha);
  if (current?.supersededBy !== report.supersededBy)
    await settleReport(store, report, earlier, log, artefacts);
  events.emit('superseded', { when });
  const what = when === 'running' ? 'canceled while running' : 'not run';
  log.info({ supersededBy: report.supersededBy }, `build superseded; ${what}`);
  void job.log(`${report.error}: ${what}`).catch(() => undefined);
  throw new UnrecoverableError(`ERRORED: ${report.error}`);
}
