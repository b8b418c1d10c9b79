import { createHash, randomUUID } from 'node:crypto';
import fs, { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, rename, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import git from 'isomorphic-git';
import tar, { type Header } from 'tar-stream';
import { artefactPath, partialArtefactPath } from '../pipeline/artefactLocation.js';
import type { StageContext, StageResult } from './types.js';

/** A commit's tree read from a git object store: exactly what was committed, whatever the build wrote since. */
export interface GitTree {
  gitdir: string;
  tree: string;
  /** Every entry's modification time: the commit's. */
  mtime: Date;
}

export interface ArtefactInput {
  /** Directories or git trees to store, each under its archive prefix. */
  trees: Array<({ dir: string } | GitTree) & { prefix: string }>;
  artefactDir: string;
  commitSha: string;
  maxBytes: number;
  timeoutMs: number;
}

export interface ArtefactValue {
  path: string;
  sha256: string;
  bytes: number;
}

const SKIPPED_NAMES = new Set(['.git']);

class TooLarge extends Error {}

class Meter extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;

  constructor(private readonly maxBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      callback(new TooLarge(`artefact exceeds the ${this.maxBytes}-byte limit`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }
}

function addEntry(
  pack: tar.Pack,
  header: Partial<Header> & Pick<Header, 'name'>,
  source?: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const entry = pack.entry(header, (error) => (error ? reject(error) : resolve()));
    entry.on('error', reject);
    if (source) createReadStream(source).on('error', reject).pipe(entry);
  });
}

// Adds one tree in sorted order; symlinks are stored as links and never followed, so nothing outside is read.
async function addTree(pack: tar.Pack, dir: string, prefix: string): Promise<void> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    if (SKIPPED_NAMES.has(entry.name)) continue;
    const path = join(dir, entry.name);
    const name = posix.join(prefix, entry.name);
    const stat = await lstat(path);
    const base = { name, mode: stat.mode & 0o7777, mtime: stat.mtime };
    if (stat.isSymbolicLink()) {
      await addEntry(pack, { ...base, type: 'symlink', linkname: await readlink(path) });
    } else if (stat.isDirectory()) {
      await addEntry(pack, { ...base, type: 'directory' });
      await addTree(pack, path, name);
    } else if (stat.isFile()) {
      await addEntry(pack, { ...base, type: 'file', size: stat.size }, path);
    }
  }
}

// Adds a git tree in sorted order with git's modes; submodules and `.git` entries are left out, as in the checkout.
async function addGitTree(pack: tar.Pack, source: GitTree, oid: string, prefix: string, cache: object) {
  const { tree } = await git.readTree({ fs, gitdir: source.gitdir, oid, cache });
  const entries = [...tree].sort((a, b) => a.path.localeCompare(b.path));
  for (const entry of entries) {
    if (entry.path.toLowerCase() === '.git' || entry.type === 'commit') continue;
    const name = posix.join(prefix, entry.path);
    const base = { name, mtime: source.mtime };
    if (entry.type === 'tree') {
      await addEntry(pack, { ...base, mode: 0o755, type: 'directory' });
      await addGitTree(pack, source, entry.oid, name, cache);
      continue;
    }
    const { blob } = await git.readBlob({ fs, gitdir: source.gitdir, oid: entry.oid, cache });
    if (entry.mode === '120000') {
      const linkname = Buffer.from(blob).toString('utf8');
      await addEntry(pack, { ...base, mode: 0o777, type: 'symlink', linkname });
    } else {
      const mode = entry.mode === '100755' ? 0o755 : 0o644;
      await new Promise<void>((resolve, reject) => {
        pack.entry({ ...base, mode, type: 'file', size: blob.length }, Buffer.from(blob), (error) =>
          error ? reject(error) : resolve(),
        );
      });
    }
  }
}

// Writes the commit's artefact where artefactPath says (named by its content), under a temporary name first, synced,
// and renamed only when complete; within the stage's time limit.
export async function run(input: ArtefactInput, ctx: StageContext): Promise<StageResult<ArtefactValue>> {
  const started = performance.now();
  await mkdir(input.artefactDir, { recursive: true });
  const temporary = partialArtefactPath(input.artefactDir, input.commitSha, `${process.pid}-${randomUUID()}`);
  const pack = tar.pack();
  const meter = new Meter(input.maxBytes);
  const limit = AbortSignal.any([ctx.signal, AbortSignal.timeout(input.timeoutMs)]);
  const writing = pipeline(pack, createGzip(), meter, createWriteStream(temporary), { signal: limit });
  const adding = (async () => {
    for (const tree of input.trees) {
      if ('dir' in tree) await addTree(pack, tree.dir, tree.prefix);
      else await addGitTree(pack, tree, tree.tree, tree.prefix, {});
    }
    pack.finalize();
  })();
  adding.catch(() => undefined);
  try {
    // If the output side fails (size cap), pending entries never complete: whichever fails first wins.
    await Promise.all([adding, writing]);
  } catch (thrown) {
    pack.destroy();
    await writing.catch(() => undefined);
    await rm(temporary, { force: true });
    const durationMs = Math.round(performance.now() - started);
    if (thrown instanceof TooLarge) {
      const value = { path: '', sha256: '', bytes: meter.bytes };
      return { outcome: 'failed', durationMs, summary: thrown.message, value };
    }
    if (ctx.signal.aborted) return { outcome: 'canceled', durationMs, summary: 'canceled' };
    if (limit.aborted) {
      return { outcome: 'timedOut', durationMs, summary: `the artefact exceeded ${input.timeoutMs} ms` };
    }
    throw thrown;
  }
  const sha256 = meter.hash.digest('hex');
  const path = artefactPath(input.artefactDir, input.commitSha, sha256);
  const handle = await open(temporary, 'r');
  await handle.sync().finally(() => handle.close());
  await rename(temporary, path);
  const value = { path, sha256, bytes: meter.bytes };
  ctx.log(`artefact ${path} (${value.bytes} bytes, sha256 ${value.sha256})`);
  const durationMs = Math.round(performance.now() - started);
  return { outcome: 'passed', durationMs, summary: `${value.bytes} bytes`, value };
}
