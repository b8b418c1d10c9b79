import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { blobMtime, type WrittenBlob } from '../git/materializeTree.js';
import { entryAt, listBeneath, openDirBeneath, readBeneath } from '../host/beneath.js';
import { stagingPath } from '../host/stagingPath.js';

// Python's bytecode of a repository's own sources, kept between the builds of one branch. A checkout is a fresh
// tree, so every build compiled every module it imported, and pytest rewrote and compiled every test file (a second
// of click's collection). The checkout's mtimes derive from blob ids (materializeTree), so a .pyc compiled from a
// file is valid, by Python's own mtime-and-size check or pytest's source hash, for every later checkout of the same
// content.
//
// Kept per repository, branch and settings files (what pytest's rewriting depends on), by the source file's blob id
// and the .pyc's tag (`cpython-311.pyc`, pytest's `cpython-311-pytest-9.2.0.pyc`). The key and the checkout's
// sources are taken before any process of the build runs. Written by the runner after the tests, from the .pyc
// files the run left beside those sources, unchanged (read without following links, bounded); put back by the
// runner into the next fresh checkout of the branch, only into `__pycache__` directories it creates itself. What a
// commit's run compiled reaches its own branch's later builds only, for at most KEEP_DAYS days.

/** Where one build's bytecode comes from and goes: decided from the checkout before any process of the build ran. */
export interface BytecodePlan {
  /** The cache directory of the repository, branch and settings. */
  dir: string;
  /** The checkout's Python sources: relative path -> blob id. */
  sources: Map<string, string>;
}

export interface BytecodePlace {
  /** The checkout, on the host. */
  src: string;
  cacheDir: string;
  /** The repository as its caches know it (URL without credentials, or a local path). */
  repository: string;
  branch: string;
}

/** The tags a build's interpreter and pytest give a module's .pyc (no other is kept). */
const TAG = /^cpython-3\d{1,2}(\.opt-[12])?(-pytest-[0-9A-Za-z.+]{1,40})?\.pyc$/;
const MODULE = /^[^.]+$/;
const OID = /^[0-9a-f]{40}$/;
const MAX_SOURCE_BYTES = 4 * 1024 * 1024;
const MAX_PYC_BYTES = 8 * 1024 * 1024;
/** New bytecode kept from one build, and bytecode kept per branch, at most. */
const MAX_KEPT_BYTES_PER_BUILD = 64 * 1024 * 1024;
const MAX_KEPT_SOURCES = 20_000;
/** Sources of one checkout looked at, at most. */
const MAX_SOURCES = 200_000;
/** A source version's bytecode is dropped this long after it was kept, used or not. */
const KEEP_DAYS = 7;
const KEEP_MS = KEEP_DAYS * 24 * 3600_000;
/** What pytest's assertion rewriting depends on besides the file (its pass hook changes the rewritten code). */
const SETTINGS = ['pyproject.toml', 'setup.cfg', 'tox.ini', 'pytest.ini'];

function blobId(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

const isDirectoryToEnter = (name: string) => name !== '.git' && name !== '__pycache__';

// The cache directory and the checkout's Python sources, as the checkout wrote them (before any process of the build
// ran): regular files named like a module, outside `.git` and `__pycache__`, with their blob ids.
export async function planBytecode(
  place: BytecodePlace,
  written: ReadonlyMap<string, WrittenBlob>,
): Promise<BytecodePlan> {
  const hash = createHash('sha256').update(`${place.repository}\n${place.branch}\n`);
  for (const name of SETTINGS) {
    const content = await readBeneath(place.src, name, MAX_SOURCE_BYTES);
    hash.update(`${name} ${content ? content.length : 'absent'}\n`);
    if (content) hash.update(content);
  }
  const sources = new Map<string, string>();
  for (const [path, { oid, size }] of written) {
    const parts = path.split('/');
    const name = parts.at(-1) ?? '';
    if (!name.endsWith('.py') || !MODULE.test(name.slice(0, -3)) || size > MAX_SOURCE_BYTES) continue;
    if (parts.slice(0, -1).some((part) => !isDirectoryToEnter(part))) continue;
    sources.set(path, oid);
    if (sources.size >= MAX_SOURCES) break;
  }
  return { dir: join(place.cacheDir, 'bytecode', hash.digest('hex').slice(0, 24)), sources };
}

// Puts the kept bytecode of the checkout's sources beside them, in `__pycache__` directories made here: called on
// the tree the runner just wrote, before any process of the build ran. A `__pycache__` the commit itself holds (or a
// link by that name) is left alone. Returns the files written.
export async function seedBytecode(src: string, plan: BytecodePlan): Promise<number> {
  if (!(await stat(plan.dir).catch(() => undefined))) return 0;
  const made = new Map<string, boolean>();
  let seeded = 0;
  for (const [path, oid] of plan.sources) {
    const tags = (await readdir(join(plan.dir, oid)).catch(() => [] as string[])).filter((tag) =>
      TAG.test(tag),
    );
    if (tags.length === 0) continue;
    const dir = posix.dirname(path);
    const parent = await openDirBeneath(src, dir === '.' ? '' : dir);
    if (!parent) continue;
    try {
      const pycache = entryAt(parent, '__pycache__');
      if (!made.has(dir)) {
        made.set(
          dir,
          await mkdir(pycache, { mode: 0o755 }).then(
            () => true,
            () => false,
          ),
        );
      }
      if (!made.get(dir)) continue;
      const module = posix.basename(path).slice(0, -3);
      for (const tag of tags) {
        const pyc = await readFile(join(plan.dir, oid, tag)).catch(() => undefined);
        if (!pyc) continue;
        await writeFile(`${pycache}/${module}.${tag}`, pyc, { flag: 'wx', mode: 0o644 });
        seeded += 1;
      }
    } finally {
      await parent.close();
    }
  }
  return seeded;
}

/** A .pyc's flags: validated by the source's mtime and size, or by the source's hash (pytest's since pytest 9). */
const TIMESTAMP_PYC = 0;
const CHECKED_HASH_PYC = 3;

// Whether a .pyc's header is one its loader checks against the source, and that a checkout of `source` passes: a
// timestamp .pyc must carry the blob's mtime and the file's size; a checked-hash .pyc is compared with the source's
// hash at every load.
function compiledFrom(pyc: Buffer, source: Buffer, oid: string): boolean {
  if (pyc.length < 16) return false;
  const flags = pyc.readUInt32LE(4);
  if (flags === CHECKED_HASH_PYC) return true;
  if (flags !== TIMESTAMP_PYC) return false;
  const mtime = Math.floor(blobMtime(oid)) % 2 ** 32;
  return pyc.readUInt32LE(8) === mtime && pyc.readUInt32LE(12) === source.length % 2 ** 32;
}

// Keeps the bytecode the build's run compiled from the checkout's sources, for the branch's later builds: only for
// a source still as checked out, only the interpreter's and pytest's tags, plain files read without following a
// link, at most MAX_KEPT_BYTES_PER_BUILD. Returns the files newly kept.
export async function keepBytecode(src: string, plan: BytecodePlan): Promise<number> {
  const byDirectory = new Map<string, Map<string, string>>();
  for (const [path, oid] of plan.sources) {
    const dir = posix.dirname(path);
    const modules = byDirectory.get(dir) ?? new Map<string, string>();
    modules.set(posix.basename(path).slice(0, -3), oid);
    byDirectory.set(dir, modules);
  }
  let kept = 0;
  let bytes = 0;
  for (const [dir, modules] of byDirectory) {
    const pycache = dir === '.' ? '__pycache__' : `${dir}/__pycache__`;
    for (const entry of await listBeneath(src, pycache)) {
      if (!entry.isFile() || bytes >= MAX_KEPT_BYTES_PER_BUILD) continue;
      const dot = entry.name.indexOf('.');
      const oid = modules.get(entry.name.slice(0, dot));
      const tag = entry.name.slice(dot + 1);
      if (dot <= 0 || !oid || !TAG.test(tag)) continue;
      const target = join(plan.dir, oid, tag);
      if (await stat(target).catch(() => undefined)) continue;
      const module = entry.name.slice(0, dot);
      const source = await readBeneath(
        src,
        dir === '.' ? `${module}.py` : `${dir}/${module}.py`,
        MAX_SOURCE_BYTES,
      );
      if (!source || blobId(source) !== oid) continue;
      const pyc = await readBeneath(src, `${pycache}/${entry.name}`, MAX_PYC_BYTES);
      if (!pyc || !compiledFrom(pyc, source, oid)) continue;
      await mkdir(join(plan.dir, oid), { recursive: true });
      const staging = stagingPath(target);
      // Readable by the build users it is copied for (whatever the worker's umask).
      await writeFile(staging, pyc, { mode: 0o644 });
      await rename(staging, target);
      kept += 1;
      bytes += pyc.length;
    }
  }
  await prune(plan.dir);
  return kept;
}

// Drops what was kept more than KEEP_MS ago (used or not), then all but the newest MAX_KEPT_SOURCES source versions;
// and the directories of branches (or settings) nothing was kept for in KEEP_MS.
async function prune(dir: string): Promise<void> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => OID.test(name));
  const dated = await Promise.all(
    names.map(async (name) => ({
      name,
      at: (await stat(join(dir, name)).catch(() => undefined))?.mtimeMs ?? 0,
    })),
  );
  dated.sort((a, b) => b.at - a.at);
  const now = Date.now();
  for (const [index, { name, at }] of dated.entries()) {
    if (index >= MAX_KEPT_SOURCES || now - at > KEEP_MS)
      await rm(join(dir, name), { recursive: true, force: true });
  }
  const parent = posix.dirname(dir);
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const at = (await stat(join(parent, name)).catch(() => undefined))?.mtimeMs;
    if (at !== undefined && now - at > KEEP_MS)
      await rm(join(parent, name), { recursive: true, force: true });
  }
}
