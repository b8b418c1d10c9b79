import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import git from 'isomorphic-git';
import { classifyFetchFault, withTimeout } from '../git/fetchFaults.js';
import {
  materializeTree,
  TreeTooLargeError,
  UnsafeTreeError,
  type WrittenBlob,
} from '../git/materializeTree.js';
import { MAX_PACKS, sequencePacks, tooManyPacks, unsequencedPacks } from '../git/packOrder.js';
import { smartHttp } from '../git/smartHttp.js';
import { pathExists } from '../host/pathExists.js';
import { withDirLock } from '../host/withDirLock.js';
import type { CheckoutCaps } from '../ops/config.js';
import { CiError, toError } from '../ops/errors.js';
import { redactUrl } from '../ops/logger.js';
import type { StageContext, StageResult } from './types.js';

/** Basic-auth credentials for http(s) remotes, from configuration only. */
export interface GitCredentials {
  username: string;
  password: string;
  /** Hosts the credentials are sent to; empty means every host. */
  hosts: string[];
}

export interface CheckoutInput {
  repositoryUrl: string;
  commitSha: string;
  branchName: string;
  /** Fresh directory the tree is written to (no .git). */
  dir: string;
  /** Persistent object caches live here, one bare repository per remote. */
  cacheDir: string;
  /** What names the remote's object cache when its URL does not (a local repository served on a random port). */
  cacheKey?: string;
  credentials?: GitCredentials;
  /** What the checkout may write at most: a larger tree is a FAILED build, "repository too large". The pipeline
   * always passes the configured caps; a direct caller without them gets only the time limit. */
  caps?: CheckoutCaps;
  timeoutMs: number;
}

// The object cache of one remote: keyed by its URL without credentials, so a token change keeps the cache.
export function cacheGitdir(cacheDir: string, url: string): string {
  const key = createHash('sha256').update(redactUrl(url)).digest('hex').slice(0, 20);
  return join(cacheDir, 'git', `${key}.git`);
}

function authFor(input: CheckoutInput) {
  const { credentials } = input;
  if (!credentials) return {};
  const host = new URL(input.repositoryUrl).hostname;
  if (credentials.hosts.length > 0 && !credentials.hosts.includes(host)) return {};
  return { onAuth: () => ({ username: credentials.username, password: credentials.password }) };
}

async function hasCommit(gitdir: string, sha: string, cache: object): Promise<boolean> {
  try {
    await git.readCommit({ fs, gitdir, oid: sha, cache });
    return true;
  } catch {
    return false;
  }
}

async function resolveRef(gitdir: string, ref: string): Promise<string | undefined> {
  return git.resolveRef({ fs, gitdir, ref }).catch(() => undefined);
}

const LAST_FETCHED = 'refs/ci-runner/last';
// How deep the branch is fetched, in turn, when the server will not send a commit by its sha.
const DEEPEN_STEPS = [64, 1024, 0x7fffffff];

async function isShallow(gitdir: string): Promise<boolean> {
  const text = await readFile(join(gitdir, 'shallow'), 'utf8').catch(() => '');
  return text.trim().length > 0;
}

// Runs one fetch; a fault the server or network caused is thrown, a refusal in the git protocol is returned.
async function attempt(input: CheckoutInput, work: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await work();
    return undefined;
  } catch (thrown) {
    const error = toError(thrown);
    const fault = classifyFetchFault(input.repositoryUrl, error);
    if (fault) throw fault;
    return error.message;
  }
}

// Fetches the branch tip first: isomorphic-git announces the local ref of the branch as "have", so the server sends
// only objects the cache lacks (a branch seen for the first time starts from the last commit fetched from this
// remote). When the commit is not the tip, it is fetched by sha; a server that refuses that gets the branch fetched
// deeper until the commit is in it. Returns why the commit is still missing, if it is: `gone` once the branch's whole
// history was fetched without it (force-pushed away, or never pushed there: no retry will find it).
async function fetchInto(
  gitdir: string,
  input: CheckoutInput,
  ctx: StageContext,
  cache: object,
): Promise<Missing | undefined> {
  const fetch = async (args: { ref: string; depth: number }) => {
    try {
      await git.fetch({ ...base, ...args });
    } finally {
      await sequencePacks(gitdir);
    }
  };
  const base = {
    fs,
    http: smartHttp(),
    gitdir,
    remote: 'origin',
    singleBranch: true,
    tags: false,
    cache,
    ...authFor(input),
  };
  const localRef = `refs/heads/${input.branchName}`;
  const last = await resolveRef(gitdir, LAST_FETCHED);
  if (last && !(await resolveRef(gitdir, localRef)))
    await git.writeRef({ fs, gitdir, ref: localRef, value: last });
  const recordTip = async () => {
    const tip = await resolveRef(gitdir, `refs/remotes/origin/${input.branchName}`);
    if (!tip) return;
    await git.writeRef({ fs, gitdir, ref: localRef, value: tip, force: true });
    await git.writeRef({ fs, gitdir, ref: LAST_FETCHED, value: tip, force: true });
  };
  const branchRefused = await attempt(input, () => fetch({ ref: input.branchName, depth: 1 }));
  if (branchRefused) ctx.log(`fetching branch ${input.branchName} failed: ${branchRefused}`);
  else await recordTip();
  if (await hasCommit(gitdir, input.commitSha, cache)) return undefined;
  const missing = (why: string, gone = false): Missing => ({ why, gone });

  const shaRefused = await attempt(input, () => fetch({ ref: input.commitSha, depth: 1 }));
  if (!shaRefused) return undefined;
  ctx.log(`the server would not send ${input.commitSha} by sha: ${shaRefused}`);
  if (branchRefused) return missing(`branch ${input.branchName}: ${branchRefused}; by sha: ${shaRefused}`);
  for (const depth of DEEPEN_STEPS) {
    const refused = await attempt(input, () => fetch({ ref: input.branchName, depth }));
    if (refused) return missing(`deepening branch ${input.branchName}: ${refused}`);
    if (await hasCommit(gitdir, input.commitSha, cache)) {
      const how = depth < 0x7fffffff ? `${depth} commits deep` : 'with its whole history';
      ctx.log(`fetched branch ${input.branchName} ${how} to reach ${input.commitSha}`);
      return undefined;
    }
    if (!(await isShallow(gitdir))) break;
  }
  return missing(
    `it is not in the history of branch ${input.branchName}, and the server answered "${shaRefused}" when asked for it by sha`,
    true,
  );
}

/** Why a commit could not be fetched; `gone`: not after fetching its branch's whole history. */
interface Missing {
  why: string;
  gone: boolean;
}

// Makes sure the remote's cache holds the commit, fetching only when it does not (one fetch per remote at a time).
async function ensureCommit(
  gitdir: string,
  input: CheckoutInput,
  ctx: StageContext,
  cache: object,
): Promise<{ fetched: boolean; known: boolean; missing?: Missing }> {
  await mkdir(join(input.cacheDir, 'git'), { recursive: true });
  return withDirLock(
    `${gitdir}.lock`,
    async () => {
      if (await unsequencedPacks(gitdir)) {
        ctx.log(`object cache ${gitdir} predates ordered packs; starting it afresh`);
        await rm(gitdir, { recursive: true, force: true });
      }
      if (await tooManyPacks(gitdir)) {
        // isomorphic-git cannot repack: start the cache afresh rather than slow every lookup down.
        ctx.log(`object cache ${gitdir} holds more than ${MAX_PACKS} packs; starting it afresh`);
        await rm(gitdir, { recursive: true, force: true });
      }
      const known = await pathExists(join(gitdir, 'config'));
      if (!known) await git.init({ fs, gitdir, bare: true, defaultBranch: 'ci-runner' });
      const url = redactUrl(input.repositoryUrl);
      if ((await git.getConfig({ fs, gitdir, path: 'remote.origin.url' })) !== url) {
        await git.setConfig({ fs, gitdir, path: 'remote.origin.url', value: url });
        const refspec = '+refs/heads/*:refs/remotes/origin/*';
        await git.setConfig({ fs, gitdir, path: 'remote.origin.fetch', value: refspec });
      }
      if (await hasCommit(gitdir, input.commitSha, cache)) {
        ctx.log(`commit ${input.commitSha} already in the object cache`);
        return { fetched: false, known };
      }
      ctx.log(`fetching ${input.commitSha} from ${url}`);
      const missing = await withTimeout(
        fetchInto(gitdir, input, ctx, cache),
        input.timeoutMs,
        input.repositoryUrl,
      );
      return { fetched: true, known, missing };
    },
    { timeoutMs: input.timeoutMs * 2 },
  );
}

export interface CheckoutValue {
  files: number;
  fetched: boolean;
  /** The object cache held this repository before: at most the new objects were fetched. */
  known: boolean;
  /** The commit's tree in the object cache, so the artefact stores exactly what was committed. */
  source?: { gitdir: string; tree: string; mtime: Date };
  /** The regular files it wrote, by path: their blob ids and sizes. */
  written?: Map<string, WrittenBlob>;
}

// Materialises exactly the requested commit (branch tip or not) from a persistent per-remote object cache into a
// fresh directory, fetching only what the cache lacks, and proves the tree written is that commit's.
export async function run(input: CheckoutInput, ctx: StageContext): Promise<StageResult<CheckoutValue>> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const gitdir = cacheGitdir(input.cacheDir, input.cacheKey ?? input.repositoryUrl);
  const cache = {};
  const { fetched, known, missing } = await ensureCommit(gitdir, input, ctx, cache);
  // The object store is content-addressed: reading the commit by its sha is what proves we have exactly it.
  const { commit } = await git
    .readCommit({ fs, gitdir, oid: input.commitSha, cache })
    .catch((thrown: unknown) => {
      const from = redactUrl(input.repositoryUrl);
      // Not retried once the branch's whole history was fetched without it: no later fetch will find it.
      if (missing?.gone) {
        throw new CiError(
          'COMMIT_MISSING',
          `commit ${input.commitSha} not on the server (force-pushed away?): ${from}: ${missing.why}`,
          { retriable: false, cause: thrown },
        );
      }
      // Retried: an agent may announce a commit a moment before its push lands.
      const why = missing?.why ?? 'the server sent it but it is not in the object cache';
      throw new CiError(
        'COMMIT_MISSING',
        `commit ${input.commitSha} cannot be fetched from ${from}: ${why}`,
        {
          retriable: true,
          cause: thrown,
        },
      );
    });
  await mkdir(input.dir, { recursive: true });
  try {
    // Its own time limit, whatever the fetch took: a slow network never turns into "repository too large".
    const deadline = performance.now() + input.timeoutMs;
    const caps = input.caps ?? { maxFiles: Infinity, maxBytes: Infinity, maxFileBytes: Infinity };
    const written = new Map<string, WrittenBlob>();
    const files = await materializeTree(
      gitdir,
      commit.tree,
      input.dir,
      cache,
      { ...caps, deadline },
      written,
    );
    const source = { gitdir, tree: commit.tree, mtime: new Date(commit.committer.timestamp * 1000) };
    return {
      outcome: 'passed',
      durationMs: elapsed(),
      summary: `checked out ${input.commitSha} (${files} files${fetched ? '' : ', from the object cache'})`,
      value: { files, fetched, known, source, written },
    };
  } catch (thrown) {
    if (thrown instanceof UnsafeTreeError) {
      const tooLarge = thrown instanceof TreeTooLargeError ? 'repository too large: ' : '';
      return {
        outcome: 'failed',
        durationMs: elapsed(),
        summary: `${tooLarge}${thrown.message}`,
        value: { files: 0, fetched, known },
      };
    }
    throw thrown;
  }
}
