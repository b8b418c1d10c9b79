import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CiError } from './errors.js';
import { pidAlive } from './pidAlive.js';

const POLL_MS = 50;

async function isStale(lockDir: string, staleMs: number): Promise<boolean> {
  try {
    const owner = (await readFile(join(lockDir, 'owner'), 'utf8')).split(' ');
    if (owner[0] === hostname() && !pidAlive(Number(owner[1]))) return true;
    return Date.now() - (await stat(lockDir)).mtimeMs > staleMs;
  } catch {
    // No owner file yet: the holder is between mkdir and writeFile, or died there.
    return (
      Date.now() -
        (await stat(lockDir).then(
          (s) => s.mtimeMs,
          () => Date.now(),
        )) >
      staleMs
    );
  }
}

// Runs work while holding an exclusive lock shared by every process on this filesystem (mkdir is atomic);
// a lock whose holder died is taken over.
export async function withDirLock<T>(
  lockDir: string,
  work: () => Promise<T>,
  options: { timeoutMs: number; staleMs?: number },
): Promise<T> {
  const staleMs = options.staleMs ?? 10 * 60_000;
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (await isStale(lockDir, staleMs)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new CiError('RUNNER_FAULT', `timed out waiting for lock ${lockDir}`, { retriable: true });
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  try {
    await writeFile(join(lockDir, 'owner'), `${hostname()} ${process.pid}`);
    return await work();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}
