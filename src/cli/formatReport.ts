import type { BuildReport } from '../delivery/contracts.js';

// A readable multi-line summary of a report for a terminal; it says only what is true of the build (no coverage
// line when no test ran, no duration when none was measured).
export function formatReport(report: BuildReport): string {
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
  for (const test of report.failedTests) lines.push(`  failed     ${test}`);
  for (const { nodeId, flips } of report.flakyTests ?? []) {
    lines.push(`  flaky      ${nodeId} (failed, then passed on a re-run; ${flips} build(s) in 30 days)`);
  }
  for (const finding of report.lintErrors) lines.push(`  lint       ${finding}`);
  return lines.join('\n');
}
