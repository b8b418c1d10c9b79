import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

// The one owner of the `owner` file that names the process holding a directory (a build directory, a lock):
// `<hostname> <pid>`, so another process on the same host can tell when its holder died.

const OWNER_FILE = 'owner';

/** Names this process, on this host, as the holder of a directory. */
export async function writeOwner(dir: string): Promise<void> {
  await writeFile(join(dir, OWNER_FILE), `${hostname()} ${process.pid}\n`);
}

// True while a process with this pid exists (EPERM: it exists but belongs to someone else).
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A directory's holder: known dead (a process of this host that no longer exists), alive (or on another host,
 * which cannot be told), or none (no readable owner file). */
export type OwnerState = { state: 'dead'; pid: number } | { state: 'alive' | 'none' };

export async function ownerState(dir: string): Promise<OwnerState> {
  const text = await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => undefined);
  if (!text) return { state: 'none' };
  const [host, pidText] = text.trim().split(' ');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0 || pidAlive(pid)) return { state: 'alive' };
  return { state: 'dead', pid };
}
