import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildLayout } from '../build/layout.js';
import { readBuildFile, readBuildJson } from '../build/readBuildFile.js';
import { stagingPath } from '../host/stagingPath.js';

/** The analysis the test run starts from, and the one it writes (in the build's out/ directory). */
export const COVERAGE_CACHE_IN = 'coverage-analysis-kept.json';
export const COVERAGE_CACHE_OUT = 'coverage-analysis.json';
/** Entries of a large project run to megabytes; a bigger file is not kept. */
const MAX_CACHE_BYTES = 64 * 1024 * 1024;

/** One repository's kept coverage analysis (ci_runner_coverage_cache.py), read by that repository's builds only. */
export interface CoverageCachePlace {
  layout: BuildLayout;
  cacheDir: string;
  /** The repository as its caches know it (URL without credentials, or a local path). */
  repository: string;
}

function cacheFile(place: CoverageCachePlace): string {
  const key = createHash('sha256').update(place.repository).digest('hex').slice(0, 24);
  return join(place.cacheDir, 'coverage-analysis', `${key}.json`);
}

// Puts the repository's kept analysis where the test run reads it, before any process of the build sees out/.
export async function restoreCoverageCache(place: CoverageCachePlace): Promise<boolean> {
  const bytes = await readFile(cacheFile(place)).catch(() => undefined);
  if (!bytes) return false;
  // Never through anything the build left there: a name it took keeps what it put there, for its own run only.
  return writeFile(join(place.layout.out, COVERAGE_CACHE_IN), bytes, { flag: 'wx' }).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') return false;
      throw error;
    },
  );
}

// Keeps the analysis the run wrote (a plain file, bounded) for the repository's next build. What the run says
// it reused, for the log.
export async function keepCoverageCache(
  place: CoverageCachePlace,
): Promise<{ hits: number; misses: number } | undefined> {
  const bytes = await readBuildFile(place.layout.out, COVERAGE_CACHE_OUT, MAX_CACHE_BYTES);
  if (!bytes) return undefined;
  const target = cacheFile(place);
  await mkdir(join(place.cacheDir, 'coverage-analysis'), { recursive: true });
  const staging = stagingPath(target);
  await writeFile(staging, bytes);
  await rename(staging, target);
  const stats = await readBuildJson<{ hits?: unknown; misses?: unknown }>(
    place.layout.out,
    `${COVERAGE_CACHE_OUT}.stats`,
    4096,
  );
  const count = (value: unknown) => (Number.isInteger(value) ? (value as number) : 0);
  return stats ? { hits: count(stats.hits), misses: count(stats.misses) } : undefined;
}
