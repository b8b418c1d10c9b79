import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildDisk } from './buildDisk.js';

const MIB = 1024 * 1024;
/** How often a running build's directories are measured. */
const INTERVAL_MS = 1000;
/** Entries measured at once within one directory. */
const PARALLEL = 32;
/** Files and directories a build may make: past this it is over its limit however small they are (inodes). */
const MAX_ENTRIES = 1_000_000;

/** A disk limit the runner enforces itself: it measures the build and stops it past the limit. */
export interface WatchedDisk extends BuildDisk {
  /** A sandbox started with this pid (its PID namespace's init): killed when the build goes past its limit. */
  track(pid: number): () => void;
}

// A directory's entries. The build runs as the runner's own uid here (a user namespace), so a directory it made
// unreadable (chmod 0300) is the runner's to open again; one that stays unreadable cannot be measured: undefined.
async function entriesOf(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    if ((error as NodeJS.ErrnoException).code !== 'EACCES') return undefined;
  }
  return chmod(dir, 0o700).then(
    () => readdir(dir, { withFileTypes: true }).catch(() => undefined),
    () => undefined,
  );
}

// The space allocated under `dir` (blocks, as du counts them), never following a link; Infinity when the build made
// more entries than any build may, or something the runner cannot measure.
async function usage(dir: string): Promise<number> {
  let bytes = 0;
  let count = 0;
  const stack = [dir];
  for (let current = stack.pop(); current !== undefined; current = stack.pop()) {
    const entries = await entriesOf(current);
    if (!entries) return Number.POSITIVE_INFINITY;
    count += entries.length;
    if (count > MAX_ENTRIES) return Number.POSITIVE_INFINITY;
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
// the build runs, its writable directories (all under `dir`) are measured every second, and past `mb` MiB (or a
// million entries, or a directory it cannot read) every sandbox of the build is killed. Best effort, not the kernel's
// refusal: a fast writer overshoots by what it writes in a second, and a file deleted while held open is not seen.
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
