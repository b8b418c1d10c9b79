import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { TreeTooLargeError, walkBeneath } from '../host/beneath.js';
import { stagingPath } from '../host/stagingPath.js';
import type { BuildLayout } from '../pipeline/layout.js';
import { readBuildFile } from '../pipeline/readBuildFile.js';

/** Which of a build's tests run when its repository sets `select = "affected"`. */
export interface TestSelection {
  /** affected: only the tests testmon says the change can affect; full: every test, recording data for later. */
  mode: 'affected' | 'full';
  /** Why (a full run's reason, or the build whose data it starts from), for the build log. */
  reason: string;
  /** Builds of this lineage since its last full run, this one included (0 for a full run). */
  sinceFull: number;
  /** What every test's outcome depends on besides the code: a full run follows when it changes. */
  fingerprint: string;
  /** The earlier build whose data an affected run starts from (its commit, abbreviated). */
  base?: string;
}

/** What an earlier build left for its descendants (written by the runner only, after its tests and coverage ran). */
interface StoredMeta {
  fingerprint: string;
  sinceFull: number;
  /** The tests its verdict named failed (after re-runs: never a flaky one); only these may be carried. */
  failed?: string[];
  /** Its run left no usable data (it crashed, say): the next build runs every test. */
  broken?: boolean;
}

const DATA = '.testmondata';
const LINES = 'lines.json';
/** The earlier build's lines.json, as the run reads it. */
export const BASE_LINES = 'base-lines.json';
/** The tests the earlier build's verdict named failed, as the run reads them (written by the runner). */
export const BASE_FAILED = 'base-failed.json';
/** Failed tests remembered per build, at most, by their ids' bytes. */
const MAX_FAILED_KEPT_BYTES = 2 * 1024 * 1024;
/** How far back the history is searched for an ancestor with data. */
const ANCESTORS = 64;
/** Builds kept per repository (the oldest go first). */
const KEPT_BUILDS = 200;
const MAX_DATA_BYTES = 512 * 1024 * 1024;
const MAX_FINGERPRINT_FILE_BYTES = 16 * 1024 * 1024;
/** Files whose change may change any test's outcome: dependency declarations, pytest's and coverage's settings. */
const DECLARATIONS = [
  'pyproject.toml',
  'setup.py',
  'setup.cfg',
  'tox.ini',
  'pytest.ini',
  '.coveragerc',
  'Pipfile',
  'Pipfile.lock',
  'poetry.lock',
  'uv.lock',
  'pdm.lock',
];
const SKIPPED_DIRS = new Set([
  '.git',
  '.venv',
  'venv',
  'node_modules',
  '.tox',
  '.nox',
  '__pycache__',
  '.eggs',
]);
/** Entries of the checkout looked at for conftest.py files (a larger tree is hashed by what was seen). */
const MAX_WALKED_ENTRIES = 200_000;
/** A commit id as the runner uses it in a path. */
const COMMIT_ID = /^[0-9a-f]{40}$/;

export interface SelectionPlace {
  layout: BuildLayout;
  cacheDir: string;
  /** The repository as its caches know it (URL without credentials, or a local path). */
  repository: string;
  commitSha: string;
  /** The object cache the checkout read the commit from (for its ancestors). */
  gitdir: string | undefined;
}

function storeDir(place: Pick<SelectionPlace, 'cacheDir' | 'repository'>): string {
  const key = createHash('sha256').update(place.repository).digest('hex').slice(0, 24);
  return join(place.cacheDir, 'test-selection', key);
}

// The conftest.py files of the tree (relative paths, sorted), never through a link.
async function conftests(src: string): Promise<string[]> {
  const found: string[] = [];
  await walkBeneath(
    src,
    async (entry) => {
      if (entry.type === 'file' && entry.name === 'conftest.py') found.push(entry.path);
      return !SKIPPED_DIRS.has(entry.name);
    },
    { maxEntries: MAX_WALKED_ENTRIES },
  ).catch((error: unknown) => {
    if (!(error instanceof TreeTooLargeError)) throw error;
  });
  return found.sort();
}

// Hashes what every test's outcome depends on besides the code under test: the runner's tools and plugin, the mark
// and arguments, dependency declarations, pytest's and coverage's settings and every conftest.py.
export async function selectionFingerprint(src: string, runner: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const part of runner) hash.update(`${part}\n`);
  const requirements = (await readdir(src).catch(() => [] as string[])).filter((name) =>
    /^(requirements|constraints).*\.(txt|in)$/.test(name),
  );
  const files = [...DECLARATIONS, ...requirements.sort(), ...(await conftests(src))];
  for (const file of files) {
    const content = await readBuildFile(src, file, MAX_FINGERPRINT_FILE_BYTES);
    hash.update(`${file} ${content ? content.length : 'absent'}\n`);
    if (content) hash.update(content);
  }
  return hash.digest('hex').slice(0, 32);
}

// The commit's ancestors, nearest first (breadth-first over every parent), as far as the object cache has them: read
// from the commit objects themselves, since the cache's shallow boundary hides parents from a log. Read one at a time,
// as the caller asks for the next (the nearest with data is usually the parent: a pack read each costs milliseconds).
export async function* ancestors(gitdir: string, commitSha: string): AsyncGenerator<string> {
  let found = 0;
  const seen = new Set([commitSha]);
  const queue = [commitSha];
  while (queue.length > 0 && found < ANCESTORS) {
    const oid = queue.shift() as string;
    const commit = await git.readCommit({ fs, gitdir, oid }).catch(() => undefined);
    for (const parent of commit?.commit.parent ?? []) {
      // A crafted commit object's parent line is only text: it names a directory of the cache only as a commit id.
      if (seen.has(parent) || !COMMIT_ID.test(parent) || found >= ANCESTORS) continue;
      seen.add(parent);
      found += 1;
      queue.push(parent);
      yield parent;
    }
  }
}

// The nearest ancestor of the commit whose build left data, with what it left.
async function findBase(place: SelectionPlace): Promise<{ sha: string; meta: StoredMeta } | undefined> {
  if (!place.gitdir) return undefined;
  for await (const oid of ancestors(place.gitdir, place.commitSha)) {
    const text = await readFile(join(storeDir(place), oid, 'meta.json'), 'utf8').catch(() => undefined);
    if (!text) continue;
    try {
      return { sha: oid, meta: JSON.parse(text) as StoredMeta };
    } catch {
      // Written by the runner, so only a crash mid-write leaves it unreadable: look further back.
    }
  }
  return undefined;
}

// Decides whether the build runs only affected tests, and puts the earlier build's data where its run reads it: the
// selection's own directory, made here fresh in the runner's part of the build directory (no process of the build
// has seen it yet) and handed to the build user by the caller.
export async function planTestSelection(
  place: SelectionPlace,
  fingerprint: string,
  fullEvery: number,
): Promise<TestSelection> {
  const dir = place.layout.affected;
  await mkdir(dir);
  const full = (reason: string): TestSelection => ({ mode: 'full', reason, sinceFull: 0, fingerprint });
  const base = await findBase(place);
  if (!base) return full('no earlier build in this history left test data');
  const short = base.sha.slice(0, 12);
  if (base.meta.broken) return full(`the test run of ${short} left no usable test data`);
  if (base.meta.fingerprint !== fingerprint) {
    return full(
      `dependency declarations, conftest.py, pytest or coverage settings or the runner's tools changed since ${short}`,
    );
  }
  if (base.meta.sinceFull + 1 >= fullEvery) {
    return full(`every ${fullEvery}th build of a history runs every test (SELECT_FULL_EVERY)`);
  }
  const from = join(storeDir(place), base.sha);
  for (const [source, target] of [
    [DATA, DATA],
    [`${DATA}-wal`, `${DATA}-wal`],
    [LINES, BASE_LINES],
  ] as const) {
    const bytes = await readFile(join(from, source)).catch(() => undefined);
    if (bytes) await writeFile(join(dir, target), bytes, { flag: 'wx' });
  }
  const failed = Array.isArray(base.meta.failed)
    ? base.meta.failed.filter((id) => typeof id === 'string')
    : [];
  await writeFile(join(dir, BASE_FAILED), JSON.stringify(failed), { flag: 'wx' });
  return {
    mode: 'affected',
    reason: `from the data of ${short} (${base.meta.sinceFull + 1} build(s) since every test ran)`,
    sinceFull: base.meta.sinceFull + 1,
    fingerprint,
    base: short,
  };
}

// Keeps what this build's run recorded, for its descendants: copied out of the build's reach (plain files only,
// bounded) into the runner's cache, under the commit's sha, with the tests its verdict named failed. False when the
// run left nothing usable.
export async function keepTestSelection(
  place: SelectionPlace,
  selection: TestSelection,
  failed: string[],
  /** Whether coverage was measured: the data is usable only then. */
  measured: boolean,
): Promise<boolean> {
  const files: Array<[string, Buffer]> = [];
  let total = 0;
  for (const name of [DATA, `${DATA}-wal`, LINES]) {
    // What is left of the budget: the files together, not each, are bounded in the runner's memory.
    const bytes = await readBuildFile(place.layout.affected, name, MAX_DATA_BYTES - total);
    if (!bytes) continue;
    total += bytes.length;
    files.push([name, bytes]);
  }
  const usable =
    measured &&
    total <= MAX_DATA_BYTES &&
    files.some(([name]) => name === DATA) &&
    files.some(([name]) => name === LINES);
  // A run that left nothing usable (a crafted record it could not read, say) is remembered as such, so that the next
  // build runs every test instead of starting from the same earlier data again.
  if (!usable && selection.mode !== 'affected') return false;
  const root = storeDir(place);
  const target = join(root, place.commitSha);
  await mkdir(root, { recursive: true });
  const staging = stagingPath(target);
  await mkdir(staging);
  if (usable) for (const [name, bytes] of files) await writeFile(join(staging, name), bytes);
  const ids = failed.filter((id) => id.includes('::'));
  const meta: StoredMeta = {
    fingerprint: selection.fingerprint,
    sinceFull: selection.sinceFull,
    failed: Buffer.byteLength(JSON.stringify(ids)) <= MAX_FAILED_KEPT_BYTES ? ids : [],
    ...(usable ? {} : { broken: true }),
  };
  await writeFile(join(staging, 'meta.json'), JSON.stringify(meta));
  await rm(target, { recursive: true, force: true });
  await rename(staging, target).catch(() => rm(staging, { recursive: true, force: true }));
  await prune(root);
  return usable;
}

// Keeps the newest KEPT_BUILDS builds' data of a repository.
async function prune(root: string): Promise<void> {
  const names = await readdir(root);
  if (names.length <= KEPT_BUILDS) return;
  const dated = await Promise.all(
    names.map(async (name) => ({
      name,
      at: (await stat(join(root, name)).catch(() => undefined))?.mtimeMs ?? 0,
    })),
  );
  dated.sort((a, b) => b.at - a.at);
  for (const { name } of dated.slice(KEPT_BUILDS))
    await rm(join(root, name), { recursive: true, force: true });
}
