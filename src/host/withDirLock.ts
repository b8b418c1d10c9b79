import { mkdir, rm, stat } from 'node:fs/promises';
import { CiError } from '../ops/errors.js';
import { ownerState, writeOwner } from './ownerFile.js';

const POLL_MS = 50;

// A lock is stale when its holder is known dead, or when it is older than staleMs (its holder on another host, or
// between mkdir and writing the owner file, or dead there).
async function isStale(lockDir: string, staleMs: number): Promise<boolean> {
  if ((await ownerState(lockDir)).state === 'dead') return true;
  const since = await stat(lockDir).then(
    (s) => s.mtimeMs,
    () => Date.now(),
  );
  return Date.now() - since > staleMs;
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
        throw new CiError('LOCK_TIMEOUT', `timed out waiting for lock ${lockDir}`, { retriable: true });
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  try {
    await writeOwner(lockDir);
    return await work();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}
