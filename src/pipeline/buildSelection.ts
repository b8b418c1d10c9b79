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

// Keeps what the test run recorded for its selection, once the tests reached a verdict (usable only when coverage
// was measured too).
export async function keepSelection(state: BuildState, ctx: StageContext): Promise<void> {
  const { selection, results } = state;
  const test = results.test;
  if (!selection || (test?.outcome !== 'passed' && test?.outcome !== 'failed')) return;
  const measured = results.coverage?.outcome === 'passed';
  const place = selectionPlace(state);
  const kept = await keepTestSelection(place, selection, test.value.failedTests, measured).catch(
    (error: unknown) => {
      ctx.log(
        `could not keep the test selection data: ${error instanceof Error ? error.message : String(error)}`,
      );
      return false;
    },
  );
  const none =
    selection.mode === 'affected'
      ? 'the test run left no usable selection data: the next build runs every test'
      : 'the test run left no selection data to keep';
  ctx.log(kept ? 'kept the test selection data for later builds' : none);
}
