import { open, readFile, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { runBounded } from '../host/runBounded.js';
import { CiError } from '../ops/errors.js';

const MIB = 1024 * 1024;
const COMMAND_TIMEOUT_MS = 60_000;
/** Below this much free space the build's filesystem counts as full (ext4 keeps a little for itself). */
const FULL_BYTES = 4 * MIB;
/** Room a repository's lower `disk-mb` takes away, as a file of the runner's the build cannot see or remove. */
const RESERVE_FILE = '.ci-runner-reserved';

/** One build's own filesystem: everything it writes is on it, and the kernel refuses a write past its size. */
export interface BuildDisk {
  /** What the report's sandbox line says of it. */
  description(): string;
  /** The limit was reached (the filesystem is full): "disk limit of N MiB reached". */
  limitEvent(): Promise<string | undefined>;
  /** Lowers the limit to `mb` (a repository's `disk-mb`), never raises it. */
  lower(mb: number): Promise<void>;
  close(): Promise<void>;
}

/** Where a build directory's filesystem image lives: beside it, in the work directory. */
export const diskImageOf = (buildDir: string) => `${buildDir}.disk`;

async function run(command: string, args: string[]): Promise<void> {
  const result = await runBounded(command, args, {
    cwd: '/',
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    timeoutMs: COMMAND_TIMEOUT_MS,
    signal: new AbortController().signal,
  });
  if (result.kind !== 'exited' || result.exitCode !== 0) {
    const detail = 'stderr' in result ? result.stderr.trim().split('\n').slice(-1)[0] : result.kind;
    throw new CiError('SANDBOX_FAULT', `${command} ${args[0] ?? ''} failed: ${detail}`, { retriable: true });
  }
}

// Unmounts a build directory's filesystem (lazily if it is still busy) and removes its image; nothing when there is
// none. Also what the orphan reaper does for a dead worker's builds.
export async function releaseBuildDisk(buildDir: string): Promise<void> {
  if (await isMountPoint(buildDir)) {
    await run('umount', [buildDir]).catch(() => run('umount', ['-l', buildDir]));
  }
  await rm(diskImageOf(buildDir), { force: true });
}

// Unmounts (lazily) every build filesystem mounted under `dir`: what a test that killed its workers leaves behind
// before it removes their work directory.
export async function releaseBuildDisksUnder(dir: string): Promise<void> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const points = mounts
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point.startsWith(`${dir}/`) && point.endsWith('/disk'));
  for (const point of points) await run('umount', ['-l', point]).catch(() => undefined);
}

async function isMountPoint(dir: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // mountinfo escapes spaces and the like as octal; build directories have none.
  return mounts.split('\n').some((line) => line.split(' ')[4] === dir);
}

// Puts a fresh ext4 filesystem of `mb` MiB on the (empty) build directory: a sparse image beside it, loop-mounted
// nosuid and nodev. The host's disk then holds at most the image's size for this build, whatever it writes.
export async function mountBuildDisk(buildDir: string, mb: number): Promise<BuildDisk> {
  const image = diskImageOf(buildDir);
  let limitMb = mb;
  try {
    const handle = await open(image, 'wx', 0o600);
    await handle.truncate(mb * MIB);
    await handle.close();
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'root_owner=0:0', image]);
    await run('mount', ['-o', 'loop,nosuid,nodev,noatime', image, buildDir]);
  } catch (error) {
    await rm(image, { force: true });
    throw error;
  }
  return {
    description: () => `disk: ${limitMb} MiB (its own ext4 filesystem)`,
    async limitEvent() {
      const stats = await statfs(buildDir).catch(() => undefined);
      if (!stats || stats.bavail * stats.bsize >= FULL_BYTES) return undefined;
      return `disk limit of ${limitMb} MiB reached`;
    },
    async lower(lowered) {
      if (lowered >= limitMb) return;
      // Blocks allocated at once (no data written): the build's filesystem is that much smaller.
      await run('fallocate', ['-l', String((mb - lowered) * MIB), join(buildDir, RESERVE_FILE)]);
      limitMb = lowered;
    },
    close: () => releaseBuildDisk(buildDir),
  };
}
