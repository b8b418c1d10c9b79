import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

// The one owner of the `owner` file that names the process holding a directory (a build directory, a lock):
// `<hostname> <pid> <boot id> <start time>`, so another process on the same host can tell when its holder died, even
// when a new process has the same pid (a restarted container's worker is pid 1 again, on the same host name).

const OWNER_FILE = 'owner';

/** The kernel's boot id and this process's start time (clock ticks since boot): a pid's identity across restarts. */
async function identity(pid: number): Promise<{ boot: string; start: string } | undefined> {
  const boot = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '');
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Field 22 (starttime), counted after the command name's closing parenthesis (the name may hold spaces).
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return boot.trim() && start ? { boot: boot.trim(), start } : undefined;
}

/** Names this process, on this host, as the holder of a directory. */
export async function writeOwner(dir: string): Promise<void> {
  const self = await identity(process.pid);
  const extra = self ? ` ${self.boot} ${self.start}` : '';
  await writeFile(join(dir, OWNER_FILE), `${hostname()} ${process.pid}${extra}\n`);
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
  const [host, pidText, boot, start] = text.trim().split(' ');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0) return { state: 'alive' };
  if (!pidAlive(pid)) return { state: 'dead', pid };
  // Written with its identity: the same pid is the same process only on the same boot with the same start time.
  if (boot && start) {
    const now = await identity(pid);
    if (now && (now.boot !== boot || now.start !== start)) return { state: 'dead', pid };
  }
  return { state: 'alive' };
}
