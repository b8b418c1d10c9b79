import type { BuildReport, TestFailure } from '../delivery/contracts.js';

// A readable multi-line summary of a report for a terminal; it says only what is true of the build (no coverage
// line when no test ran, no duration when none was measured).
export function formatReport(report: BuildReport, verbose = false): string {
  const duration = report.durationMs > 0 ? `  (${(report.durationMs / 1000).toFixed(1)} s)` : '';
  const stored = report.republished ? '  [stored report, published again]' : '';
  const lines = [`${report.status}  ${report.commitSha}${duration}${stored}`];
  if (report.testsRun > 0) {
    lines.push(`  coverage   ${report.lineCoverage.toFixed(2)}% of lines, ${report.testsRun} test(s) run`);
  } else if (report.stages.some((stage) => stage.name === 'test')) {
    lines.push('  tests      none ran');
  }
  if (report.artefactUrl) lines.push(`  artefact   ${report.artefactUrl}`);
  if (report.error) lines.push(`  reason     ${report.error}`);
  for (const stage of report.stages) {
    lines.push(
      `  ${stage.name.padEnd(10)} ${stage.outcome.padEnd(8)} ${stage.durationMs} ms  ${stage.summary}`,
    );
  }
  const failures = new Map((report.failures ?? []).map((failure) => [failure.nodeId, failure]));
  for (const test of report.failedTests) {
    lines.push(`  failed     ${test}`);
    lines.push(...details(failures.get(test), verbose));
  }
  for (const { nodeId, flips } of report.flakyTests ?? []) {
    lines.push(`  flaky      ${nodeId} (failed, then passed on a re-run; ${flips} build(s) in 30 days)`);
    lines.push(...details(failures.get(nodeId), verbose));
  }
  report.lintErrors.forEach((finding, index) => {
    lines.push(`  lint       ${finding}`);
    const diff = report.lintFindings?.[index]?.diff;
    if (verbose && diff) lines.push(...indent(diff));
  });
  if (report.failuresTruncated) {
    lines.push(
      `  (${report.failuresTruncated} failure(s) without details: the artefact's reports/test.log has them)`,
    );
  }
  return lines.join('\n');
}

const indent = (text: string) =>
  text
    .replace(/\n+$/, '')
    .split('\n')
    .map((line) => `             ${line}`);

// A failure's message and location under its id; its traceback and output too with --verbose.
function details(failure: TestFailure | undefined, verbose: boolean): string[] {
  if (!failure) return [];
  const lines: string[] = [];
  const where = failure.location ? `  (${failure.location})` : '';
  if (failure.message) lines.push(...indent(`${failure.message.split('\n')[0]}${where}`));
  else if (where) lines.push(...indent(where.trim()));
  if (verbose && failure.traceback) lines.push(...indent(failure.traceback));
  if (verbose && failure.output) lines.push(...indent(failure.output));
  return lines;
}
