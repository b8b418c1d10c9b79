import type { BuildLayout } from '../pipeline/layout.js';
import { readBuildFile, readBuildJson } from '../pipeline/readBuildFile.js';
import type { StageContext, StageResult } from './types.js';

/** coverage.json of a large project runs to megabytes; more than this is not a report the runner reads. */
const MAX_COVERAGE_JSON_BYTES = 64 * 1024 * 1024;

export interface CoverageInput {
  layout: BuildLayout;
  timeoutMs: number;
}

export interface CoverageValue {
  lineCoverage: number;
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

// The line coverage figure from coverage.json, which the runner's pytest plugin wrote as the test run exited
// (`coverage json` of the run's data, in the same process). Kept in the artefact. Reading it is bounded in size
// and, like every stage, in time.
export async function run(input: CoverageInput, ctx: StageContext): Promise<StageResult<CoverageValue>> {
  const started = performance.now();
  const { layout } = input;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<'timedOut'>((resolve) => {
    timer = setTimeout(() => resolve('timedOut'), input.timeoutMs);
  });
  const reading = readBuildJson<{ totals?: CoverageTotals }>(
    layout.out,
    'coverage.json',
    MAX_COVERAGE_JSON_BYTES,
  );
  const report = await Promise.race([reading, limit]).finally(() => clearTimeout(timer));
  const durationMs = Math.round(performance.now() - started);
  if (report === 'timedOut') {
    return {
      outcome: 'timedOut',
      durationMs,
      summary: `reading coverage.json exceeded ${input.timeoutMs} ms`,
    };
  }
  if (!report?.totals) {
    const why = (await readBuildFile(layout.out, 'coverage.json.error', 4096))?.toString('utf8').trim();
    ctx.log(`no coverage data to report${why ? ` (${why})` : ''}`);
    return { outcome: 'passed', durationMs, summary: 'no coverage data', value: { lineCoverage: 0 } };
  }
  const value = { lineCoverage: lineCoverage(report.totals) };
  return { outcome: 'passed', durationMs, summary: `${value.lineCoverage.toFixed(2)}% of lines`, value };
}
