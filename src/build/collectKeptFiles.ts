import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readBuildFile } from './readBuildFile.js';

export interface KeptLimits {
  maxFiles: number;
  maxDepth: number;
  maxFileBytes: number;
}

const DEFAULT_LIMITS: KeptLimits = { maxFiles: 1000, maxDepth: 8, maxFileBytes: 64 * 1024 * 1024 };

// Copies the files a build asked to keep ($CI_RUNNER_KEEP) into a runner-owned directory for the artefact: plain
// files and directories only (symlinks, FIFOs and devices are skipped, nothing is followed), within limits, so
// a build cannot make the runner read anything but what it wrote. Returns how many files were kept.
export async function collectKeptFiles(from: string, to: string, limits = DEFAULT_LIMITS): Promise<number> {
  let kept = 0;
  const walk = async (dir: string, target: string, depth: number): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (kept >= limits.maxFiles) return;
      if (entry.isDirectory() && depth < limits.maxDepth) {
        await walk(join(dir, entry.name), join(target, entry.name), depth + 1);
      } else if (entry.isFile()) {
        const bytes = await readBuildFile(join(dir, entry.name), limits.maxFileBytes);
        if (!bytes) continue;
        await mkdir(target, { recursive: true });
        await writeFile(join(target, entry.name), bytes, { mode: 0o644 });
        kept += 1;
      }
    }
  };
  await walk(from, to, 0);
  return kept;
}
