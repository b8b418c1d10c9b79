import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { blobMtime } from '../git/materializeTree.js';
import { entryAt, readBeneath, TreeTooLargeError, walkBeneath } from '../host/beneath.js';
import { stagingPath } from '../host/stagingPath.js';

// Python's bytecode of a repository's own sources, kept between its builds. A checkout is a fresh tree, so every
// build compiled every module it imported, and pytest rewrote and compiled every test file (a second of click's
// collection). The checkout's mtimes derive from blob ids (materializeTree), so a .pyc compiled from a file is
// valid, by Python's and pytest's own mtime-and-size check, for every later checkout of the same content.
//
// Kept per repository, by the source file's blob id and the .pyc's tag (`cpython-311.pyc`, pytest's
// `cpython-311-pytest-9.2.0.pyc`). Written by the runner, from the .pyc files the build's run left beside its
// sources (read without following links); put back by the runner into a fresh checkout before any process of the
// build runs (only into `__pycache__` directories it creates itself). Like coverage's kept analysis and the test
// selection data, what a repository's run wrote reaches that repository's later builds only.

export interface BytecodePlace {
  /** The checkout, on the host. */
  src: string;
  cacheDir: string;
  /** The repository as its caches know it (URL without credentials, or a local path). */
  repository: string;
}

/** A .pyc's name after its module's: an interpreter tag, an optional optimisation or pytest's tag, `.pyc`. */
const TAG = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.pyc$/;
const MODULE = /^[^.]+$/;
const OID = /^[0-9a-f]{40}$/;
const MAX_SOURCE_BYTES = 4 * 1024 * 1024;
const MAX_PYC_BYTES = 8 * 1024 * 1024;
const MAX_WALKED_ENTRIES = 200_000;
/** Source versions kept per repository and configuration (the oldest go first). */
const KEPT_SOURCES = 20_000;
/** A repository (or configuration) with no build for this long loses its bytecode. */
const STALE_MS = 30 * 24 * 3600_000;
/** What pytest's assertion rewriting depends on besides the file (its pass hook changes the rewritten code). */
const SETTINGS = ['pyproject.toml', 'setup.cfg', 'tox.ini', 'pytest.ini'];

function blobId(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

// The repository's bytecode directory for the checkout's settings files.
async function cacheRoot(place: BytecodePlace): Promise<string> {
  const hash = createHash('sha256').update(`${place.repository}\n`);
  for (const name of SETTINGS) {
    const content = await readBeneath(place.src, name, MAX_SOURCE_BYTES);
    hash.update(`${name} ${content ? content.length : 'absent'}\n`);
    if (content) hash.update(content);
  }
  return join(place.cacheDir, 'bytecode', hash.digest('hex').slice(0, 24));
}

const isDirectoryToEnter = (name: string) => name !== '.git' && name !== '__pycache__';

// Puts the kept bytecode of the checkout's sources beside them, in `__pycache__` directories made here: called on
// the tree the runner just wrote, before any process of the build ran. A `__pycache__` the commit itself holds (or a
// link by that name) is left alone. Returns the files written.
export async function seedBytecode(place: BytecodePlace): Promise<number> {
  const root = await cacheRoot(place);
  if (!(await stat(root).catch(() => undefined))) return 0;
  const made = new Set<string>();
  let seeded = 0;
  await walkBeneath(
    place.src,
    async (entry) => {
      if (entry.type === 'directory') return isDirectoryToEnter(entry.name);
      if (entry.type !== 'file' || !entry.name.endsWith('.py')) return;
      const module = entry.name.slice(0, -3);
      const bytes = MODULE.test(module) ? await entry.read() : undefined;
      if (!bytes) return;
      const oid = blobId(bytes);
      const tags = (await readdir(join(root, oid)).catch(() => [] as string[])).filter((tag) =>
        TAG.test(tag),
      );
      if (tags.length === 0) return;
      const dir = posix.dirname(entry.path);
      const pycache = entryAt(entry.parent, '__pycache__');
      if (!made.has(dir)) {
        const created = await mkdir(pycache, { mode: 0o755 }).then(
          () => true,
          () => false,
        );
        if (!created) return;
        made.add(dir);
      }
      for (const tag of tags) {
        const pyc = await readFile(join(root, oid, tag)).catch(() => undefined);
        if (!pyc) continue;
        await writeFile(`${pycache}/${module}.${tag}`, pyc, { flag: 'wx', mode: 0o644 });
        seeded += 1;
      }
    },
    { maxEntries: MAX_WALKED_ENTRIES, maxFileBytes: MAX_SOURCE_BYTES },
  ).catch((error: unknown) => {
    if (!(error instanceof TreeTooLargeError)) throw error;
  });
  return seeded;
}

/** A .pyc's flags: validated by the source's mtime and size, or by the source's hash (pytest's, since pytest 7). */
const TIMESTAMP_PYC = 0;
const CHECKED_HASH_PYC = 3;

// Whether a .pyc's header is one its loader checks against the source, and that a checkout of `source` passes: a
// timestamp .pyc must carry the blob's mtime and the file's size (one compiled from a file the build rewrote is not
// kept); a checked-hash .pyc is compared with the source's hash at every load.
function compiledFrom(pyc: Buffer, source: Buffer, oid: string): boolean {
  if (pyc.length < 16) return false;
  const flags = pyc.readUInt32LE(4);
  if (flags === CHECKED_HASH_PYC) return true;
  if (flags !== TIMESTAMP_PYC) return false;
  const mtime = Math.floor(blobMtime(oid)) % 2 ** 32;
  return pyc.readUInt32LE(8) === mtime && pyc.readUInt32LE(12) === source.length % 2 ** 32;
}

// Keeps the bytecode the build's run compiled from its checkout's sources, for the repository's later builds: plain
// files only, never through a link, each checked against its source. Returns the files newly kept.
export async function keepBytecode(place: BytecodePlace): Promise<number> {
  const root = await cacheRoot(place);
  let kept = 0;
  await walkBeneath(
    place.src,
    async (entry) => {
      if (entry.type === 'directory') return entry.name !== '.git';
      const where = entry.path.split('/');
      if (entry.type !== 'file' || where[where.length - 2] !== '__pycache__') return;
      const dot = entry.name.indexOf('.');
      const module = entry.name.slice(0, dot);
      const tag = entry.name.slice(dot + 1);
      if (dot <= 0 || !TAG.test(tag)) return;
      const source = await readBeneath(
        place.src,
        [...where.slice(0, -2), `${module}.py`].join('/'),
        MAX_SOURCE_BYTES,
      );
      if (!source) return;
      const oid = blobId(source);
      const target = join(root, oid, tag);
      if (await stat(target).catch(() => undefined)) return;
      const pyc = await entry.read();
      if (!pyc || pyc.length > MAX_PYC_BYTES || !compiledFrom(pyc, source, oid)) return;
      await mkdir(join(root, oid), { recursive: true });
      const staging = stagingPath(target);
      // Readable by the build users it is copied for (whatever the worker's umask).
      await writeFile(staging, pyc, { mode: 0o644 });
      await rename(staging, target);
      kept += 1;
    },
    { maxEntries: MAX_WALKED_ENTRIES, maxFileBytes: MAX_PYC_BYTES },
  ).catch((error: unknown) => {
    if (!(error instanceof TreeTooLargeError)) throw error;
  });
  await mkdir(root, { recursive: true });
  const now = new Date();
  await utimes(root, now, now);
  await prune(root);
  return kept;
}

// Keeps the newest KEPT_SOURCES source versions of one directory, and removes directories of repositories (or
// settings) not built for STALE_MS.
async function prune(root: string): Promise<void> {
  const names = (await readdir(root)).filter((name) => OID.test(name));
  if (names.length > KEPT_SOURCES) {
    const dated = await Promise.all(
      names.map(async (name) => ({
        name,
        at: (await stat(join(root, name)).catch(() => undefined))?.mtimeMs ?? 0,
      })),
    );
    dated.sort((a, b) => b.at - a.at);
    for (const { name } of dated.slice(KEPT_SOURCES))
      await rm(join(root, name), { recursive: true, force: true });
  }
  const parent = posix.dirname(root);
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const at = (await stat(join(parent, name)).catch(() => undefined))?.mtimeMs;
    if (at !== undefined && Date.now() - at > STALE_MS)
      await rm(join(parent, name), { recursive: true, force: true });
  }
}
