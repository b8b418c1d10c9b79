import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ownerState } from '../host/ownerFile.js';
import type { Logger } from '../ops/logger.js';
import { releaseBuildDisk } from '../sandbox/buildDisk.js';
import { buildCgroupName } from '../sandbox/buildSandbox.js';
import type { Cgroups } from '../sandbox/cgroups.js';

// Pids of the processes whose environment has CI_RUNNER_BUILD=<build dir>: every process a build starts inherits it.
async function processesOf(buildDir: string): Promise<number[]> {
  const marker = `CI_RUNNER_BUILD=${buildDir}\0`;
  const pids: number[] = [];
  for (const name of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(name)) continue;
    const environ = await readFile(`/proc/${name}/environ`, 'latin1').catch(() => '');
    if (environ.includes(marker)) pids.push(Number(name));
  }
  return pids;
}

// Kills what builds of dead workers on this host left running (a worker killed with SIGKILL cannot do it itself)
// and removes their directories and control groups. Returns how many processes it killed.
export async function reapOrphans(workDir: string, logger: Logger, cgroups?: Cgroups): Promise<number> {
  let killed = 0;
  for (const entry of await readdir(workDir).catch(() => [])) {
    const dir = join(workDir, entry);
    const owner = await ownerState(dir);
    if (owner.state !== 'dead') continue;
    for (const orphan of await processesOf(dir)) {
      try {
        process.kill(orphan, 'SIGKILL');
        killed += 1;
      } catch {
        // Already gone.
      }
    }
    await cgroups?.remove(buildCgroupName(dir));
    await releaseBuildDisk(join(dir, 'disk')).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    logger.warn({ dir, deadWorker: owner.pid }, 'reaped the leftovers of a dead worker');
  }
  return killed;
}

// Reaps once now, then every `everyMs` until the returned stop is called.
export async function startReaping(
  workDir: string,
  logger: Logger,
  cgroups: Cgroups | undefined,
  everyMs: number,
): Promise<() => void> {
  await reapOrphans(workDir, logger, cgroups);
  const timer = setInterval(() => void reapOrphans(workDir, logger, cgroups).catch(() => undefined), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
