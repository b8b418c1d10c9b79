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
    const why = readableFailures(report);
    const findings = readableFindings(report);
    return {
      status,
      error,
      ...(why.length ? { 'why each test failed': why } : {}),
      ...(findings.length ? { 'lint findings': findings } : {}),
      failedTests,
      flakyTests,
      lintErrors,
      ...rest,
    };
  });
}

// "tests/test_a.py::test_b — failed at pkg/a.py:12: AssertionError: assert 3 == 4": one line per failure, what an
// on-call reader looks for first (the full details follow in `failures`).
export function readableFailures(report: Partial<BuildReport>): string[] {
  return (report.failures ?? []).map((failure) => {
    const where = failure.location ? ` at ${failure.location}` : '';
    const message = failure.message ? `: ${failure.message.split('\n')[0]}` : '';
    return `${failure.nodeId} — ${failure.kind}${where}${message}`;
  });
}

// "pkg/a.py:1:8 ruff F401 (fixable): `os` imported but unused"; a formatter's finding with its diff below it.
export function readableFindings(report: Partial<BuildReport>): string[] {
  return (report.lintFindings ?? []).map((finding) => {
    const where = finding.line ? `${finding.path}:${finding.line}:${finding.column}` : finding.path;
    const code = finding.code ? ` ${finding.code}` : '';
    const fixable = finding.fixable ? ' (fixable)' : '';
    const diff = finding.diff ? `\n${finding.diff}` : '';
    return `${where} ${finding.tool}${code}${fixable}: ${finding.message}${diff}`;
  });
}
