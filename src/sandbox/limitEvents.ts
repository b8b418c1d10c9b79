import type { BuildResources } from '../ops/config.js';
import type { BuildDisk } from './buildDisk.js';
import type { BuildCgroup } from './cgroups.js';

// What the kernel enforced since the last call (OOM kills, refused forks), in words, from the build's cgroup.
export function limitWatcher(
  cgroup: BuildCgroup | undefined,
  current: () => BuildResources,
): () => Promise<string[]> {
  let seen = { oomKills: 0, forkRefusals: 0 };
  return async () => {
    if (!cgroup) return [];
    const now = await cgroup.counters();
    const events: string[] = [];
    const limits = current();
    if (now.oomKills > seen.oomKills) {
      events.push(
        `memory limit of ${limits.memoryMb} MiB reached: the kernel killed ${now.oomKills - seen.oomKills} process(es)`,
      );
    }
    if (now.forkRefusals > seen.forkRefusals) {
      events.push(
        `process limit of ${limits.maxProcesses} reached: ${now.forkRefusals - seen.forkRefusals} fork(s) refused`,
      );
    }
    seen = now;
    return events;
  };
}

// The kernel's limit events, and the build's filesystem being full (while it is).
export function withDiskEvent(
  events: () => Promise<string[]>,
  disk: BuildDisk | undefined,
): () => Promise<string[]> {
  return async () => {
    const found = await events();
    const full = await disk?.limitEvent();
    return full ? [...found, full] : found;
  };
}
