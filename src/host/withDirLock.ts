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

/** A take-over guard older than this was left by a process that died taking over: it is removed. */
const GUARD_STALE_MS = 30_000;

// Removes a stale lock so that waiters may race for it again (mkdir decides), one waiter at a time: under a guard
// directory, and only if the lock is still stale then. Without the guard, a second waiter that saw the same stale
// lock could remove the lock the first had just taken.
async function takeOver(lockDir: string, staleMs: number): Promise<void> {
  const guard = `${lockDir}.takeover`;
  try {
    await mkdir(guard);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const since = await stat(guard).then(
      (s) => s.mtimeMs,
      () => Date.now(),
    );
    if (Date.now() - since > GUARD_STALE_MS) await rm(guard, { recursive: true, force: true });
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    return;
  }
  try {
    if (await isStale(lockDir, staleMs)) await rm(lockDir, { recursive: true, force: true });
  } finally {
    await rm(guard, { recursive: true, force: true });
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
        await takeOver(lockDir, staleMs);
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
