import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runBounded } from '../process.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { StageContext, StageResult } from './types.js';

export interface CoverageInput {
  layout: BuildLayout;
  timeoutMs: number;
}

interface CoverageTotals {
  covered_lines: number;
  num_statements: number;
}

// Line coverage exactly: covered lines / statements x 100 (coverage.py's percent_covered mixes in branches).
export function lineCoverage(totals: CoverageTotals): number {
  if (totals.num_statements === 0) return 0;
  return (totals.covered_lines / totals.num_statements) * 100;
}

// Turns the test run's coverage data into coverage.json (kept in the artefact) and the line coverage figure.
export async function run(
  input: CoverageInput,
  ctx: StageContext,
): Promise<StageResult<{ lineCoverage: number }>> {
  const { layout } = input;
  const output = join(layout.reports, 'coverage.json');
  const result = await runBounded(
    join(layout.venv, 'bin', 'python'),
    ['-m', 'coverage', 'json', `--data-file=${join(layout.reports, '.coverage')}`, '-o', output],
    {
      cwd: layout.src,
      env: buildEnv(layout),
      timeoutMs: input.timeoutMs,
      signal: ctx.signal,
      logFile: join(layout.reports, 'coverage.log'),
    },
  );
  const durationMs = result.durationMs;
  if (result.kind === 'canceled') return { outcome: 'canceled', durationMs, summary: 'canceled' };
  if (result.kind === 'timedOut')
    return { outcome: 'timedOut', durationMs, summary: 'coverage report timed out' };
  if (result.kind !== 'exited' || result.exitCode !== 0) {
    ctx.log('no coverage data to report');
    return { outcome: 'passed', durationMs, summary: 'no coverage data', value: { lineCoverage: 0 } };
  }
  const report = JSON.parse(await readFile(output, 'utf8')) as { totals: CoverageTotals };
  const value = { lineCoverage: lineCoverage(report.totals) };
  return { outcome: 'passed', durationMs, summary: `${value.lineCoverage.toFixed(2)}% of lines`, value };
}
