import fs from 'node:fs';
import { mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { type ObjectSizes, objectSizes } from './objectSize.js';

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

/** A regular file the checkout wrote: its blob id and size. */
export interface WrittenBlob {
  oid: string;
  size: number;
}

/** The commit's tree holds something git itself would refuse to check out. */
export class UnsafeTreeError extends Error {}

/** The commit's tree is larger than a checkout may be (files, bytes, one file's bytes, or time). */
export class TreeTooLargeError extends UnsafeTreeError {}

/** What one checkout may write at most, and by when. */
export interface TreeCaps {
  maxFiles: number;
  maxBytes: number;
  maxFileBytes: number;
  /** performance.now() past which the checkout stops. */
  deadline: number;
}

/** Blobs read and written at once (each is read whole by isomorphic-git, at most maxFileBytes). */
const PARALLEL_BLOBS = 8;

function checkName(name: string, where: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UnsafeTreeError(
      `tree entry ${JSON.stringify(name)} in ${where || '/'} is not a valid file name`,
    );
  }
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MIB)} MiB`;

async function readTree(gitdir: string, oid: string, cache: object, where: string) {
  const { tree } = await git.readTree({ fs, gitdir, oid, cache }).catch((error: Error) => {
    // isomorphic-git refuses entries such as ".." itself.
    if ((error as Error & { code?: string }).code === git.Errors.UnsafeFilepathError.code)
      throw new UnsafeTreeError(`${error.message} (in ${where || '/'})`);
    throw error;
  });
  for (const entry of tree) checkName(entry.path, where);
  return tree;
}

interface Size {
  files: number;
  bytes: number;
}

// Measures a tree before anything is written: its files and bytes, each distinct tree and blob looked at once (a
// tree that holds another many times over is counted by multiplication, never by walking every copy), every blob
// by its header only. Throws TreeTooLargeError as soon as the totals pass a cap, or the deadline.
async function measure(gitdir: string, treeOid: string, cache: object, caps: TreeCaps): Promise<void> {
  const sizes = objectSizes(gitdir);
  const trees = new Map<string, Promise<Size>>();
  const blobs = new Map<string, Promise<number>>();
  const blobSize = (oid: string, path: string) => {
    let size = blobs.get(oid);
    if (!size) {
      size = sizeOf(sizes, gitdir, oid, cache).then((bytes) => {
        if (bytes > caps.maxFileBytes)
          throw new TreeTooLargeError(`${path} is ${mib(bytes)} (one file may be ${mib(caps.maxFileBytes)})`);
        return bytes;
      });
      blobs.set(oid, size);
    }
    return size;
  };
  const tree = (oid: string, where: string): Promise<Size> => {
    let size = trees.get(oid);
    if (!size) {
      size = (async () => {
        if (performance.now() > caps.deadline) throw new TreeTooLargeError('its checkout ran out of time');
        const total = { files: 0, bytes: 0 };
        for (const entry of await readTree(gitdir, oid, cache, where)) {
          if (entry.path.toLowerCase() === '.git') continue;
          const path = `${where}/${entry.path}`;
          // A submodule is written as an empty directory: one entry, like a file.
          const part =
            entry.type === 'tree'
              ? await tree(entry.oid, path)
              : entry.type === 'commit'
                ? { files: 1, bytes: 0 }
                : { files: 1, bytes: await blobSize(entry.oid, path.slice(1)) };
          // A directory counts as an entry too: a tree of empty directories is no cheaper to write.
          total.files += part.files + (entry.type === 'tree' ? 1 : 0);
          total.bytes += part.bytes;
          if (total.files > caps.maxFiles)
            throw new TreeTooLargeError(`over ${caps.maxFiles} files and directories`);
          if (total.bytes > caps.maxBytes) throw new TreeTooLargeError(`over ${mib(caps.maxBytes)}`);
        }
        return total;
      })();
      trees.set(oid, size);
    }
    return size;
  };
  await tree(treeOid, '');
}

// A blob's size from its header; an object the header reader cannot place is read once to be measured.
async function sizeOf(sizes: ObjectSizes, gitdir: string, oid: string, cache: object): Promise<number> {
  const size = await sizes(oid).catch(() => undefined);
  if (size !== undefined) return size;
  const { blob } = await git.readBlob({ fs, gitdir, oid, cache });
  return blob.length;
}

// A small counting semaphore: at most `limit` tasks run at once.
function limiter(limit: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running += 1;
    try {
      return await task();
    } finally {
      running -= 1;
      waiting.shift()?.();
    }
  };
}

// Writes a tree from a git object store into dir: files with their modes, symlinks as symlinks, submodules as empty
// directories, `.git` entries skipped. Measured first against the caps (a git bomb is refused before one file is
// written), then written with a bounded number of blobs in memory. Read-only on the object store, so builds sharing
// one cache never race; every path is created exclusively, so a crafted tree cannot write through a symlink or
// outside dir. Returns the files written; each regular file's path (relative, with `/`), blob id and size go into
// `written` when given.
export async function materializeTree(
  gitdir: string,
  treeOid: string,
  dir: string,
  cache: object,
  caps: TreeCaps,
  written?: Map<string, WrittenBlob>,
): Promise<number> {
  await measure(gitdir, treeOid, cache, caps);
  const blobSlot = limiter(PARALLEL_BLOBS);
  const write = async (oid: string, into: string, where: string): Promise<number> => {
    if (performance.now() > caps.deadline) throw new TreeTooLargeError('its checkout ran out of time');
    const tree = await readTree(gitdir, oid, cache, where);
    // Entries of one directory are written concurrently; each path is created exclusively (mkdir, wx, symlink
    // all fail on an existing path), so duplicate or colliding names fail instead of overwriting.
    const counts = await Promise.all(
      tree.map(async (entry) => {
        if (entry.path.toLowerCase() === '.git') return 0;
        const path = join(into, entry.path);
        if (entry.type === 'tree') {
          await mkdir(path);
          return write(entry.oid, path, `${where}/${entry.path}`);
        }
        if (entry.type === 'commit') {
          await mkdir(path);
          return 0;
        }
        return blobSlot(async () => {
          const { blob } = await git.readBlob({ fs, gitdir, oid: entry.oid, cache });
          if (entry.mode === '120000') await symlink(Buffer.from(blob).toString('utf8'), path);
          else {
            await writeFile(path, blob, { flag: 'wx', mode: entry.mode === '100755' ? 0o755 : 0o644 });
            const mtime = blobMtime(entry.oid);
            await utimes(path, mtime, mtime);
            written?.set(`${where}/${entry.path}`.slice(1), { oid: entry.oid, size: blob.length });
          }
          return 1;
        });
      }),
    );
    return counts.reduce((sum, count) => sum + count, 0);
  };
  return write(treeOid, dir, '');
}
