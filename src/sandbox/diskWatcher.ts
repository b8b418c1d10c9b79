import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildDisk } from './buildDisk.js';

const MIB = 1024 * 1024;
/** How often a running build's directories are measured. */
const INTERVAL_MS = 1000;
/** Entries measured at once within one directory. */
const PARALLEL = 32;

/** A disk limit the runner enforces itself: it measures the build and stops it past the limit. */
export interface WatchedDisk extends BuildDisk {
  /** A sandbox started with this pid (its PID namespace's init): killed when the build goes past its limit. */
  track(pid: number): () => void;
}

// The space allocated under `dir` (blocks, as du counts them), never following a link.
async function usage(dir: string): Promise<number> {
  let bytes = 0;
  const stack = [dir];
  for (let current = stack.pop(); current !== undefined; current = stack.pop()) {
    const entries = await readdir(current, { withFileTypes: true }).catch(() => []);
    for (let i = 0; i < entries.length; i += PARALLEL) {
      const batch = entries.slice(i, i + PARALLEL);
      const sizes = await Promise.all(
        batch.map(async (entry) => {
          const path = join(current as string, entry.name);
          if (entry.isDirectory()) stack.push(path);
          const stats = await lstat(path).catch(() => undefined);
          return (stats?.blocks ?? 0) * 512;
        }),
      );
      for (const size of sizes) bytes += size;
    }
  }
  return bytes;
}

// The fallback where the runner cannot give a build a filesystem of its own (it is not root): while any process of
// the build runs, its writable directories (all under `dir`) are measured every second, and past `mb` MiB every
// sandbox of the build is killed. Not the kernel's refusal: a fast writer may overshoot by what it writes in a second.
export function watchBuildDisk(dir: string, mb: number): WatchedDisk {
  let limitMb = mb;
  let tripped = false;
  let measuring = false;
  let timer: NodeJS.Timeout | undefined;
  const running = new Set<number>();
  const tick = async () => {
    if (measuring) return;
    measuring = true;
    try {
      if ((await usage(dir)) <= limitMb * MIB) return;
      tripped = true;
      for (const pid of running) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    } finally {
      measuring = false;
    }
  };
  const stop = () => {
    clearInterval(timer);
    timer = undefined;
  };
  return {
    description: () =>
      `disk: ${limitMb} MiB, watched by the runner (no filesystem of its own: the worker is not root; a build past it is stopped within about a second)`,
    async limitEvent() {
      if (!tripped) return undefined;
      tripped = false;
      return `disk limit of ${limitMb} MiB reached`;
    },
    async lower(lowered) {
      limitMb = Math.min(limitMb, lowered);
    },
    track(pid) {
      running.add(pid);
      timer ??= setInterval(() => void tick(), INTERVAL_MS);
      return () => {
        running.delete(pid);
        if (!running.size) stop();
      };
    },
    async close() {
      running.clear();
      stop();
    },
  };
}
