import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { walkBeneath } from '../host/beneath.js';
import { pathExists } from '../host/pathExists.js';
import { stagingPath } from '../host/stagingPath.js';

/** One repository's black and ruff caches, kept between builds by the runner. */
export interface LintCache {
  /** Copies the kept caches into a build's lint directory (nothing when there are none yet). */
  restore(into: string): Promise<boolean>;
  /** Keeps what lint left in a build's lint directory for the repository's next build. */
  save(from: string): Promise<void>;
}

/** Entries of lint's caches carried at most (black and ruff keep one file per linted directory or so). */
const MAX_CACHE_ENTRIES = 50_000;

// Copies the runner's kept caches into a build's lint directory (before lint's processes run): directories and
// regular files only, a few of them, so a plain walk (fs.cp takes tens of milliseconds for a handful of files).
async function restoreTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  const entries = await readdir(from, { withFileTypes: true });
  await Promise.all(
    entries.map(async (entry) => {
      if (entry.isDirectory()) await restoreTree(join(from, entry.name), join(to, entry.name));
      else if (entry.isFile()) await copyFile(join(from, entry.name), join(to, entry.name));
    }),
  );
}

// Copies what lint's processes left (directories and plain files, read by descriptor, never through a link) into
// a directory of the runner's.
async function saveTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  await walkBeneath(
    from,
    async (entry) => {
      const target = join(to, entry.path);
      if (entry.type === 'directory') await mkdir(target);
      const bytes = entry.type === 'file' ? await entry.read() : undefined;
      if (bytes) await writeFile(target, bytes, { flag: 'wx' });
    },
    { maxEntries: MAX_CACHE_ENTRIES },
  );
}

// The caches of one repository under `<cacheDir>/lint/<key>`, keyed by the repository and the runner's tool pins.
// Only lint's own processes (the runner's black and ruff, reading a copy of the commit the runner wrote) ever write
// a build's copy; the build's install and tests never see it, and the runner swaps it in whole after the build.
export function lintCache(cacheDir: string, repository: string, toolsFingerprint: string): LintCache {
  const key = createHash('sha256').update(`${toolsFingerprint}\n${repository}\n`).digest('hex').slice(0, 24);
  const dir = join(cacheDir, 'lint', key);
  return {
    async restore(into) {
      if (!(await pathExists(dir))) return false;
      await restoreTree(dir, into).catch(() => undefined);
      return true;
    },
    async save(from) {
      if (!(await pathExists(from))) return;
      await mkdir(join(cacheDir, 'lint'), { recursive: true });
      const staging = stagingPath(dir);
      const old = stagingPath(dir, 'old');
      try {
        await saveTree(from, staging);
      } catch {
        // More than a cache should hold: the repository's next build lints without it.
        await rm(staging, { recursive: true, force: true });
        return;
      }
      await rename(dir, old).catch(() => undefined);
      await rename(staging, dir).catch(async () => rm(staging, { recursive: true, force: true }));
      await rm(old, { recursive: true, force: true });
    },
  };
}
