import { type CoverageCachePlace, keepCoverageCache } from '../stages/coverageCache.js';
import { keepTestSelection, type SelectionPlace } from '../stages/testSelection.js';
import type { StageContext } from '../stages/types.js';
import type { BuildState } from './stageDefinition.js';

// Where a build's test selection data lives (its history's data in the runner's cache).
export function selectionPlace(state: BuildState): SelectionPlace {
  return {
    layout: state.layout,
    cacheDir: state.cacheDir,
    repository: state.repository,
    commitSha: state.input.commitSha,
    gitdir:
      state.results.checkout?.outcome === 'passed' ? state.results.checkout.value.source?.gitdir : undefined,
  };
}

// Where a build's kept coverage analysis lives (its repository's, in the runner's cache).
export function coverageCachePlace(state: BuildState): CoverageCachePlace {
  return { layout: state.layout, cacheDir: state.cacheDir, repository: state.repository };
}

// Keeps coverage's analysis of the files the run reported on, once it wrote its report.
export async function keepCoverageAnalysis(state: BuildState, ctx: StageContext): Promise<void> {
  if (state.results.coverage?.outcome !== 'passed') return;
  // A cache that cannot be written costs the next build a re-parse, never this build its verdict.
  const stats = await keepCoverageCache(coverageCachePlace(state)).catch((error: unknown) => {
    ctx.log(`could not keep coverage's analysis: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  });
  if (stats) {
    const files = stats.hits + stats.misses;
    ctx.log(
      `coverage analysed ${stats.misses} of ${files} file(s); the rest came from the repository's earlier builds`,
    );
  }
}

// Keeps what the test run recorded for its selection, once the tests reached a verdict and coverage was measured.
export async function keepSelection(state: BuildState, ctx: StageContext): Promise<void> {
  const { selection, results } = state;
  const test = results.test;
  if (!selection || (test?.outcome !== 'passed' && test?.outcome !== 'failed')) return;
  if (results.coverage?.outcome !== 'passed') return;
  const failed = test.value.failedTests;
  const kept = await keepTestSelection(selectionPlace(state), selection, failed).catch((error: unknown) => {
    ctx.log(
      `could not keep the test selection data: ${error instanceof Error ? error.message : String(error)}`,
    );
    return false;
  });
  ctx.log(
    kept ? 'kept the test selection data for later builds' : 'the test run left no selection data to keep',
  );
}
