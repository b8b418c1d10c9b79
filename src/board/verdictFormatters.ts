import type { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { BuildReport } from '../delivery/contracts.js';
import type { BuildJobData } from '../delivery/queue.js';

interface JobJson {
  name?: string;
  data?: Partial<BuildJobData>;
  returnvalue?: Partial<BuildReport> | null;
  failedReason?: string;
  finishedOn?: number;
}

// The verdict of a finished build job: its report's status, or ERRORED for a job failed with an ERRORED report.
export function verdictOf(job: JobJson): string | undefined {
  if (job.returnvalue?.status) return job.returnvalue.status;
  if (job.failedReason?.includes('ERRORED')) return 'ERRORED';
  // Failed without a report (say, stalled more often than allowed): no verdict at all.
  if (job.failedReason) return 'NO REPORT';
  return undefined;
}

// Shows each build's verdict at a glance in Bull Board's job lists ("FAILED · main · 1a2b3c4d") and, on the job page,
// its report led by what failed: the failed tests, the flaky ones (passed on a re-run), the lint findings and the
// reason.
export function addVerdictFormatters(adapter: BullMQAdapter): void {
  adapter.setFormatter('name', (job: JobJson) => {
    const verdict = verdictOf(job) ?? (job.finishedOn ? 'finished' : 'building');
    const branch = job.data?.branchName ?? '?';
    const sha = job.data?.commitSha?.slice(0, 8) ?? '?';
    return `${verdict} · ${branch} · ${sha}`;
  });
  adapter.setFormatter('returnValue', (report: Partial<BuildReport> | null | undefined) => {
    if (!report || typeof report !== 'object') return report;
    const { status, failedTests, flakyTests, lintErrors, error, ...rest } = report;
    return { status, failedTests, flakyTests, lintErrors, error, ...rest };
  });
}
