import { type BuildReport, encodeBuildReport } from './contracts.js';

/** How a report is kept sendable: at most this many entries per list, and at most this many bytes encoded. */
export interface ReportLimits {
  maxEntries: number;
  maxBytes: number;
}

/** Kafka's default max.message.bytes, less room for the record's own framing. */
export const DEFAULT_REPORT_LIMITS: ReportLimits = { maxEntries: 1000, maxBytes: 1_048_588 - 1024 };

/** The most text kept of the error and of each stage's summary when nothing else brings a report under its limit. */
const MAX_TEXT_BYTES = 1024;

function cut(text: string, bytes: number): string {
  const buffer = Buffer.from(text, 'utf8');
  if (buffer.length <= bytes) return text;
  return `${buffer
    .subarray(0, bytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '')}… (${buffer.length - bytes} bytes more)`;
}

// The report with its lists cut to their first `entries` entries (a stable order: the tools'), counting what was left.
function keepFirst(report: BuildReport, entries: number): BuildReport {
  const failed = report.failedTests.length - Math.min(entries, report.failedTests.length);
  const lint = report.lintErrors.length - Math.min(entries, report.lintErrors.length);
  const failedTests = report.failedTests.slice(0, entries);
  const flakyTests = report.flakyTests.slice(0, entries);
  // The details follow their entries (one per failed test, then one per flaky test; one per lint finding).
  const kept = new Set([...failedTests, ...flakyTests.map((flaky) => flaky.nodeId)]);
  return {
    ...report,
    failedTests,
    lintErrors: report.lintErrors.slice(0, entries),
    flakyTests,
    failures: report.failures.filter((failure) => kept.has(failure.nodeId)),
    lintFindings: report.lintFindings.slice(0, entries),
    failedTestsOmitted: report.failedTestsOmitted + failed,
    lintErrorsOmitted: report.lintErrorsOmitted + lint,
  };
}

const size = (report: BuildReport) => encodeBuildReport(report).length;

/** A failure's message as a report that had to shrink keeps it (its first line or so). */
const SHORT_MESSAGE_BYTES = 256;

// The report with its failures' tracebacks and outputs and its findings' diffs left out, and its messages shortened
// (those failures counted as truncated).
function withoutDetails(report: BuildReport): BuildReport {
  const detailed = report.failures.filter((failure) => failure.traceback || failure.output).length;
  return {
    ...report,
    failures: report.failures.map((failure) => ({
      ...failure,
      message: cut(failure.message, SHORT_MESSAGE_BYTES),
      traceback: '',
      output: '',
    })),
    lintFindings: report.lintFindings.map((finding) => ({ ...finding, diff: '' })),
    failuresTruncated: report.failuresTruncated + detailed,
  };
}

const REDUCED = / ?;? ?report reduced to fit \d+ bytes/g;
const LEFT_OUT = / ?;? ?[^;]* left out of this report \(the artefact's reports\/ has them all\)/g;

// The report's error with what fitting left out said once, as the counts now stand (a report fitted again gets its
// notes rewritten, never repeated).
function withNotes(report: BuildReport, reducedTo: number | undefined): BuildReport {
  const plain = report.error.replace(REDUCED, '').replace(LEFT_OUT, '').replace(/^; /, '');
  const omitted = [
    report.failedTestsOmitted ? `${report.failedTestsOmitted} failed test(s)` : '',
    report.lintErrorsOmitted ? `${report.lintErrorsOmitted} lint finding(s)` : '',
  ].filter(Boolean);
  const notes = [
    reducedTo === undefined ? '' : `report reduced to fit ${reducedTo} bytes`,
    omitted.length
      ? `${omitted.join(' and ')} left out of this report (the artefact's reports/ has them all)`
      : '',
  ].filter(Boolean);
  return { ...report, error: [plain, ...notes].filter(Boolean).join('; ') };
}

// Keeps a report within its limits: every list at most maxEntries long, then, if it is still larger than maxBytes
// encoded, its lists cut further (the most entries that fit), then its error and stage summaries shortened, and last
// its stage summaries and sandbox line dropped. The verdict fields (sha, status, coverage, artefact) are never
// touched; the error says what was left out.
export function fitReport(report: BuildReport, limits: ReportLimits): BuildReport {
  const { maxBytes } = limits;
  const capped = keepFirst(report, limits.maxEntries);
  let fitted = withNotes(capped, undefined);
  if (size(fitted) <= maxBytes) return fitted;
  // Details go before entries: tracebacks, outputs and diffs first (the artefact's reports/ keeps the logs).
  const plain = withoutDetails(capped);
  fitted = withNotes(plain, maxBytes);
  if (size(fitted) <= maxBytes) return fitted;
  const entries = (n: number) => withNotes(keepFirst(plain, n), maxBytes);
  let low = 0;
  let high = Math.max(capped.failedTests.length, capped.lintErrors.length, capped.flakyTests.length);
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (size(entries(middle)) <= maxBytes) low = middle;
    else high = middle - 1;
  }
  fitted = entries(low);
  if (size(fitted) > maxBytes) {
    const shortened = {
      ...fitted,
      error: cut(fitted.error, MAX_TEXT_BYTES),
      stages: fitted.stages.map((stage) => ({ ...stage, summary: cut(stage.summary, MAX_TEXT_BYTES) })),
      sandbox: cut(fitted.sandbox, MAX_TEXT_BYTES),
    };
    fitted = size(shortened) <= maxBytes ? shortened : { ...shortened, stages: [], sandbox: '' };
  }
  return fitted;
}
