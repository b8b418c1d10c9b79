import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TreeTooLargeError, walkBeneath } from '../host/beneath.js';

export interface KeptLimits {
  maxFiles: number;
  maxDepth: number;
  maxFileBytes: number;
  /** All kept files together (the artefact's cap: more could never be stored anyway). */
  maxTotalBytes: number;
}

export const DEFAULT_KEPT_LIMITS: KeptLimits = {
  maxFiles: 1000,
  maxDepth: 8,
  maxFileBytes: 64 * 1024 * 1024,
  maxTotalBytes: 512 * 1024 * 1024,
};
/** Entries looked at (files, links, directories) before the walk gives up on a build's keep directory. */
const MAX_ENTRIES = 100_000;

// Copies the files a build asked to keep ($CI_RUNNER_KEEP, in its out/ directory) into a runner-owned
// directory for the artefact: plain files and directories only, walked by descriptor, so a link the build planted
// (the keep directory itself, a directory in it, a file) is never followed, and within limits. Returns how many
// files were kept.
export async function collectKeptFiles(
  from: string,
  to: string,
  limits = DEFAULT_KEPT_LIMITS,
): Promise<number> {
  let kept = 0;
  let total = 0;
  await walkBeneath(
    from,
    async (entry) => {
      if (kept >= limits.maxFiles) return false;
      if (entry.type !== 'file') return entry.type === 'directory';
      const bytes = await entry.read();
      if (!bytes || total + bytes.length > limits.maxTotalBytes) return;
      total += bytes.length;
      const target = join(to, entry.path);
      await mkdir(join(target, '..'), { recursive: true });
      await writeFile(target, bytes, { mode: 0o644, flag: 'wx' });
      kept += 1;
    },
    // The walk counts the keep directory's own entries as depth 1: `maxDepth` directories below keep are entered.
    { maxDepth: limits.maxDepth + 1, maxFileBytes: limits.maxFileBytes, maxEntries: MAX_ENTRIES },
  ).catch((error: unknown) => {
    if (!(error instanceof TreeTooLargeError)) throw error;
  });
  return kept;
}
