import { join } from 'node:path';
import { runBounded } from '../process.js';
import { readBuildJson } from '../readBuildFile.js';
import { type BuildLayout, buildEnv } from './layout.js';
import type { StageContext, StageResult } from './types.js';

export interface CoverageInput {
  layout: BuildLayout;
  timeoutMs: number;
  /** The shared environment the build's venv extends (read-only). */
  sharedEnv?: string;
  /** The key's ready environment, bound read-only as the venv (instead of the build's own). */
  venvDir?: string;
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
  const { inside } = layout;
  const result = await runBounded(
    join(inside.venv, 'bin', 'python'),
    [
      '-m',
      'coverage',
      'json',
      `--data-file=${join(inside.out, '.coverage')}`,
      '-o',
      join(inside.out, 'coverage.json'),
    ],
    {
      cwd: inside.src,
      env: buildEnv(layout),
      timeoutMs: input.timeoutMs,
      signal: ctx.signal,
      logFile: join(layout.reports, 'coverage.log'),
      launch: ctx.sandbox.launch({ venv: true, shared: input.sharedEnv, venvDir: input.venvDir }),
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
  const report = await readBuildJson<{ totals?: CoverageTotals }>(join(layout.out, 'coverage.json'));
  if (!report?.totals) {
    ctx.log('coverage report missing or unreadable');
    return { outcome: 'passed', durationMs, summary: 'no coverage data', value: { lineCoverage: 0 } };
  }
  const value = { lineCoverage: lineCoverage(report.totals) };
  return { outcome: 'passed', durationMs, summary: `${value.lineCoverage.toFixed(2)}% of lines`, value };
}
