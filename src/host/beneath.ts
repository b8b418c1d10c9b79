import { constants, type Dirent } from 'node:fs';
import { type FileHandle, lchown, lstat, open, opendir, readdir } from 'node:fs/promises';

// The one way the runner touches a directory a build could write (its checkout, venv, out/, home/, tmp/, lint/ and
// selection directories) once a process of the build may have run: one component at a time, each opened by
// descriptor relative to the one before it (`/proc/self/fd/<parent>/<name>`, so only `<name>` is resolved) with
// O_NOFOLLOW, so a link the build planted anywhere on the way is refused, never followed. Node has no openat2;
// this descent gives the same guarantee as RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS.

const DIRECTORY = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const PLAIN_FILE = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** An entry's path as the kernel resolves it: its name inside an already opened (and checked) directory. */
export function entryAt(dir: FileHandle, name: string): string {
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** What a refused or absent entry yields: a link (ELOOP), a file where a directory was expected, nothing there, a
 * socket, no permission. Any other error (out of descriptors, I/O) is the host's, and thrown. */
const REFUSED = new Set(['ELOOP', 'ENOTDIR', 'ENOENT', 'ENXIO', 'EACCES', 'EPERM']);

function refused(error: NodeJS.ErrnoException): undefined {
  if (error.code && REFUSED.has(error.code)) return undefined;
  throw error;
}

/** A path under a build directory that names `..`, or is absolute: never resolved. */
export class PathOutsideError extends Error {}

function components(relative: string): string[] {
  if (relative.startsWith('/')) throw new PathOutsideError(`${relative} is not a relative path`);
  const names = relative.split('/').filter((name) => name !== '' && name !== '.');
  if (names.includes('..')) throw new PathOutsideError(`${relative} leaves its directory`);
  return names;
}

// Opens `root` (a directory the runner made) and then each component of `relative` below it as a directory, refusing
// links at every step. Undefined when any component is missing, a link or not a directory.
export async function openDirBeneath(root: string, relative = ''): Promise<FileHandle | undefined> {
  const names = components(relative);
  let dir = await open(root, DIRECTORY).catch(refused);
  for (const name of names) {
    if (!dir) return undefined;
    const parent: FileHandle = dir;
    try {
      dir = await open(entryAt(parent, name), DIRECTORY).catch(refused);
    } finally {
      await parent.close();
    }
  }
  return dir;
}

// Reads a plain file under `root`: never through a link at any component, never a FIFO or device, never more than
// maxBytes. Undefined when it is missing, not a regular file, or larger, so a build cannot make the runner read (or
// hang on) anything but what it wrote itself.
export async function readBeneath(
  root: string,
  relative: string,
  maxBytes: number,
): Promise<Buffer | undefined> {
  const names = components(relative);
  const name = names.pop();
  if (name === undefined) return undefined;
  const dir = await openDirBeneath(root, names.join('/'));
  if (!dir) return undefined;
  let handle: FileHandle | undefined;
  try {
    handle = await open(entryAt(dir, name), PLAIN_FILE).catch(refused);
  } finally {
    await dir.close();
  }
  if (!handle) return undefined;
  try {
    return await readOpened(handle, maxBytes);
  } finally {
    await handle.close();
  }
}

async function readOpened(handle: FileHandle, maxBytes: number): Promise<Buffer | undefined> {
  const stat = await handle.stat();
  if (!stat.isFile() || stat.size > maxBytes) return undefined;
  const buffer = Buffer.alloc(stat.size);
  const { bytesRead } = await handle.read(buffer, 0, stat.size, 0);
  return buffer.subarray(0, bytesRead);
}

/** One entry met by walkBeneath. */
export interface TreeEntry {
  /** Relative to the walked directory, `/`-separated. */
  path: string;
  /** 1 for the walked directory's own entries. */
  depth: number;
  type: 'directory' | 'file' | 'other';
  /** The open directory holding it, and its name there (for lchown or an exclusive create through entryAt). */
  parent: FileHandle;
  name: string;
  /** A plain file's bytes (files only, at most maxFileBytes; undefined when larger or no longer plain). */
  read(): Promise<Buffer | undefined>;
}

export interface WalkLimits {
  /** Entries met, past which the walk stops with TreeTooLargeError (a build tree the runner must not walk forever). */
  maxEntries: number;
  /** Directories deeper than this are not entered (their entry is still met). */
  maxDepth: number;
  maxFileBytes: number;
}

/** A walked tree holds more entries than the walk's limit. */
export class TreeTooLargeError extends Error {}

const WALK_DEFAULTS: WalkLimits = { maxEntries: 1_000_000, maxDepth: 64, maxFileBytes: 64 * 1024 * 1024 };

// Walks a build's tree depth-first in name order without ever following a link: every directory is opened by
// descriptor from its parent with O_NOFOLLOW, links and special files are met as such and never entered or read.
// `visit` returns false to leave a directory unentered. `onDirectory` sees each directory's own descriptor.
export async function walkBeneath(
  root: string,
  visit: (entry: TreeEntry) => Promise<unknown>,
  options: Partial<WalkLimits> & { onDirectory?: (dir: FileHandle, path: string) => Promise<void> } = {},
): Promise<void> {
  const limits = { ...WALK_DEFAULTS, ...options };
  const top = await openDirBeneath(root);
  if (!top) return;
  let met = 0;
  const walk = async (dir: FileHandle, path: string, depth: number): Promise<void> => {
    await options.onDirectory?.(dir, path);
    // Listed as the entries arrive, so a directory of millions of entries stops the walk at its limit, not in memory.
    const entries: Dirent[] = [];
    for await (const entry of await opendir(entryAt(dir, '.'))) {
      met += 1;
      if (met > limits.maxEntries) {
        throw new TreeTooLargeError(`${root} holds more than ${limits.maxEntries} entries`);
      }
      entries.push(entry);
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const type = entry.isDirectory() ? 'directory' : entry.isFile() ? 'file' : 'other';
      const child = path ? `${path}/${entry.name}` : entry.name;
      const read = async () => {
        if (type !== 'file') return undefined;
        const handle = await open(entryAt(dir, entry.name), PLAIN_FILE).catch(refused);
        if (!handle) return undefined;
        try {
          return await readOpened(handle, limits.maxFileBytes);
        } finally {
          await handle.close();
        }
      };
      const enter = await visit({ path: child, depth, type, parent: dir, name: entry.name, read });
      if (type !== 'directory' || enter === false || depth >= limits.maxDepth) continue;
      // Replaced by a link since it was listed: ELOOP or ENOTDIR, and it is not entered.
      const sub = await open(entryAt(dir, entry.name), DIRECTORY).catch(refused);
      if (!sub) continue;
      try {
        await walk(sub, child, depth + 1);
      } finally {
        await sub.close();
      }
    }
  };
  try {
    await walk(top, '', 1);
  } finally {
    await top.close();
  }
}

// Gives a build's tree to its user: every directory by its descriptor, every other entry by lchown of its name in
// its opened parent, so neither a linked directory nor a link's target is ever changed.
export async function chownBeneath(
  root: string,
  uid: number,
  gid: number,
  maxEntries: number,
): Promise<void> {
  await walkBeneath(
    root,
    async (entry) => {
      if (entry.type !== 'directory') await lchown(entryAt(entry.parent, entry.name), uid, gid);
    },
    { maxEntries, maxDepth: Number.MAX_SAFE_INTEGER, onDirectory: (dir) => dir.chown(uid, gid) },
  );
}

// What `relative` under `root` is, without following a link at any component: undefined when it is missing or a
// component on the way is a link; `other` for a link or special file itself.
export async function typeBeneath(
  root: string,
  relative: string,
): Promise<'directory' | 'file' | 'other' | undefined> {
  const names = components(relative);
  const name = names.pop();
  if (name === undefined) return (await isDirectory(root)) ? 'directory' : undefined;
  const dir = await openDirBeneath(root, names.join('/'));
  if (!dir) return undefined;
  try {
    const stat = await lstat(entryAt(dir, name)).catch(refused);
    if (!stat) return undefined;
    return stat.isDirectory() ? 'directory' : stat.isFile() ? 'file' : 'other';
  } finally {
    await dir.close();
  }
}

async function isDirectory(path: string): Promise<boolean> {
  const dir = await openDirBeneath(path);
  await dir?.close();
  return dir !== undefined;
}

// The entries of a directory under `root`, reached without following a link (empty when it cannot be).
export async function listBeneath(root: string, relative: string): Promise<Dirent[]> {
  const dir = await openDirBeneath(root, relative);
  if (!dir) return [];
  try {
    return await readdir(entryAt(dir, '.'), { withFileTypes: true });
  } finally {
    await dir.close();
  }
}
