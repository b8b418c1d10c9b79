import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A directory and a file outside any build that a test links to from inside one: never a real system path. */
export interface Canary {
  dir: string;
  file: string;
  /** The bytes the canary file holds: found anywhere the runner publishes, they prove a leak. */
  secret: string;
  /** Content, mode, owner and entries of the canary, to compare before and after. */
  state(): Promise<string>;
  remove(): Promise<void>;
}

// Makes a root-owned canary directory (mode 0700) holding one file (mode 0600) with a random secret.
export async function makeCanary(prefix = 'ci-runner-canary-'): Promise<Canary> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o700);
  const secret = `canary-${randomBytes(16).toString('hex')}`;
  const file = join(dir, 'secret.txt');
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  const describe = async (path: string) => {
    const s = await lstat(path);
    return `${path} ${s.mode.toString(8)} ${s.uid}:${s.gid}`;
  };
  return {
    dir,
    file,
    secret,
    async state() {
      const entries = (await readdir(dir)).sort();
      const content = createHash('sha256')
        .update(await readFile(file))
        .digest('hex');
      return [await describe(dir), await describe(file), entries.join(','), content].join('\n');
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
