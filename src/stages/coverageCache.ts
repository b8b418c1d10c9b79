import { createHash } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathExists } from '../host/pathExists.js';
import { stagingPath } from '../host/stagingPath.js';
import type { BuildLayout } from '../pipeline/layout.js';
import { readBuildFile, readBuildJson } from '../pipeline/readBuildFile.js';

/** The analysis the test run writes (in the build's out/ directory); it reads the kept one as a runner file. */
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

// The repository's kept analysis, if it has one: the test run reads it read-only (bound into its sandbox as a file
// of the runner's), so nothing of the build's is ever written or read through on its way there.
export async function keptCoverageCache(place: CoverageCachePlace): Promise<string | undefined> {
  const file = cacheFile(place);
  return (await pathExists(file)) ? file : undefined;
}

/** A repository with no build for this long loses its kept analysis. */
const STALE_MS = 30 * 24 * 3600_000;

// Removes the analyses of repositories not built for STALE_MS (their next build parses every file again).
async function pruneStale(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const at = (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs;
    if (at !== undefined && Date.now() - at > STALE_MS) await rm(join(dir, name), { force: true });
  }
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
  // Readable by the build users that read it back (whatever the worker's umask).
  await writeFile(staging, bytes, { mode: 0o644 });
  await rename(staging, target);
  await pruneStale(join(place.cacheDir, 'coverage-analysis'));
  const stats = await readBuildJson<{ hits?: unknown; misses?: unknown }>(
    place.layout.out,
    `${COVERAGE_CACHE_OUT}.stats`,
    4096,
  );
  const count = (value: unknown) => (Number.isInteger(value) ? (value as number) : 0);
  return stats ? { hits: count(stats.hits), misses: count(stats.misses) } : undefined;
}
