import type { Job } from 'bullmq';
import type { BuildReport } from '../delivery/contracts.js';
import type { Placement } from '../delivery/placement.js';
import type { BuildJobData } from '../delivery/queue.js';
import type { ReportStore } from '../delivery/reportStore.js';
import type { Logger } from '../ops/logger.js';
import { erroredReport } from '../pipeline/report.js';
import { MAX_STALLED } from './buildWorkers.js';

// Gives a build whose job failed for good without a report (BullMQ failing it past its stall limit without calling
// the processor: its workers died mid-build again and again; a throw outside the processor's own handling on its last
// attempt) an ERRORED report naming why, so no announced commit goes without one.
export async function reportFailedJob(
  store: ReportStore,
  placement: Placement,
  job: Job<BuildJobData, BuildReport>,
  error: Error,
  logger: Logger,
): Promise<void> {
  if (!(await job.isFailed()) || (await store.get(job.data.commitSha))) return;
  // A placed build's copy on its warm host builds it (or has built it): its report is the one to come.
  const claim = job.data.placedOn ? await placement.read(job.data.commitSha) : undefined;
  if (claim?.holder.endsWith(' host')) return;
  const why = /stalled more than allowable limit/.test(error.message)
    ? `${error.message} (the worker running it stopped mid-build more than ${MAX_STALLED} times)`
    : error.message;
  const report = erroredReport(
    { ...job.data, attempt: job.attemptsMade },
    new Error(`job failed: ${why}`),
    0,
  );
  const standing = await store.record(report);
  logger.warn(
    { jobId: job.id, commitSha: job.data.commitSha, error: standing.error },
    'job failed without a report; recorded ERRORED',
  );
}
