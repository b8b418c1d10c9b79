import type { BuildReport } from './contracts.js';

// A readable multi-line summary of a report for a terminal.
export function formatReport(report: BuildReport): string {
  const lines = [
    `${report.status}  ${report.commitSha}  (${(report.durationMs / 1000).toFixed(1)} s)`,
    `  coverage   ${report.lineCoverage.toFixed(2)}% of lines, ${report.testsRun} test(s) run`,
    `  artefact   ${report.artefactUrl || '(none)'}`,
  ];
  if (report.error) lines.push(`  reason     ${report.error}`);
  for (const stage of report.stages) {
    lines.push(
      `  ${stage.name.padEnd(10)} ${stage.outcome.padEnd(8)} ${stage.durationMs} ms  ${stage.summary}`,
    );
  }
  for (const test of report.failedTests) lines.push(`  failed     ${test}`);
  for (const finding of report.lintErrors) lines.push(`  lint       ${finding}`);
  return lines.join('\n');
}
