import fs from 'node:fs';
import { mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import git from 'isomorphic-git';

/**
 * A file's modification time derived from its blob id (seconds since 1970, 2001–2010, with a 20-bit fraction that
 * is exact in a double): every checkout of the same content gets the same mtime, so caches keyed by path and
 * mtime (ruff, black, Python's bytecode) become caches keyed by content, and a changed file never matches.
 */
export function blobMtime(oid: string): number {
  return (
    1_000_000_000 + Number.parseInt(oid.slice(0, 7), 16) + Number.parseInt(oid.slice(7, 12), 16) / 2 ** 20
  );
}

/** The commit's tree holds something git itself would refuse to check out. */
export class UnsafeTreeError extends Error {}

function checkName(name: string, where: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UnsafeTreeError(
      `tree entry ${JSON.stringify(name)} in ${where || '/'} is not a valid file name`,
    );
  }
}

// Writes a tree from a git object store into dir: files with their modes, symlinks as symlinks, submodules as empty
// directories, `.git` entries skipped. Read-only on the object store, so builds sharing one cache never race; every
// path is created exclusively, so a crafted tree cannot write through a symlink or outside dir.
export async function materializeTree(
  gitdir: string,
  treeOid: string,
  dir: string,
  cache: object,
  where = '',
): Promise<number> {
  const { tree } = await git.readTree({ fs, gitdir, oid: treeOid, cache }).catch((error: Error) => {
    // isomorphic-git refuses entries such as ".." itself.
    if ((error as Error & { code?: string }).code === git.Errors.UnsafeFilepathError.code)
      throw new UnsafeTreeError(`${error.message} (in ${where || '/'})`);
    throw error;
  });
  for (const entry of tree) checkName(entry.path, where);
  // Entries of one directory are written concurrently; each path is created exclusively (mkdir, wx, symlink
  // all fail on an existing path), so duplicate or colliding names fail instead of overwriting.
  const counts = await Promise.all(
    tree.map(async (entry) => {
      if (entry.path.toLowerCase() === '.git') return 0;
      const path = join(dir, entry.path);
      if (entry.type === 'tree') {
        await mkdir(path);
        return materializeTree(gitdir, entry.oid, path, cache, `${where}/${entry.path}`);
      }
      if (entry.type === 'commit') {
        await mkdir(path);
        return 0;
      }
      const { blob } = await git.readBlob({ fs, gitdir, oid: entry.oid, cache });
      if (entry.mode === '120000') await symlink(Buffer.from(blob).toString('utf8'), path);
      else {
        await writeFile(path, blob, { flag: 'wx', mode: entry.mode === '100755' ? 0o755 : 0o644 });
        const mtime = blobMtime(entry.oid);
        await utimes(path, mtime, mtime);
      }
      return 1;
    }),
  );
  const files = counts.reduce((sum, count) => sum + count, 0);
  return files;
}
